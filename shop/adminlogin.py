"""Admin login throttling on top of django-axes (issue 18, point 5).

Two limits, both counted in axes' ``AccessAttempt`` rows in PostgreSQL:

- per account *and* address (axes itself, ``AXES_LOCKOUT_PARAMETERS``): after
  ``AXES_FAILURE_LIMIT`` wrong passwords for one username from one address,
  that pair is locked for ``AXES_COOLOFF_MINUTES``. Someone guessing from
  another address cannot lock the real owner out.
- per address across usernames (``AdminLoginIpThrottleMiddleware``): after
  ``ADMIN_LOGIN_IP_FAILURE_LIMIT`` failures from one address within the same
  cool-off, whatever the usernames, its login POSTs are refused. axes applies a
  single limit to every lockout parameter, so a coarser per-address limit has
  to live beside it; reading the same rows keeps one store, one window, and
  one way to unlock (``manage.py axes_reset_ip``).

The client address is the project's own (``riskctl.identity.client_ip``):
``X-Forwarded-For`` counts only from ``TRUSTED_PROXIES``, so a spoofed header
can neither dodge a lockout nor frame another address. Each lockout raises an
owner alert; the attempted password is never in it (axes masks it in its own
rows too).
"""

from __future__ import annotations

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from riskctl.identity import client_ip

# Stands for "no peer address" (a unix-socket proxy, a test client), as
# riskctl.identity.ratelimit_ip does: such requests share one counter.
UNKNOWN_IP = "0.0.0.0"


def admin_login_client_ip(request) -> str:
    """``AXES_CLIENT_IP_CALLABLE``: the address the risk rules and rate limits see."""
    return client_ip(request) or UNKNOWN_IP


def _cool_off_minutes() -> int:
    return int(get_cool_off().total_seconds() // 60)


def admin_login_ip_failures(*, ip: str) -> dict:
    """Failed logins from ``ip`` within the cool-off: ``{"failures": n, "usernames": m}``."""
    since = timezone.now() - get_cool_off()
    totals = AccessAttempt.objects.filter(ip_address=ip, attempt_time__gte=since).aggregate(
        failures=Sum("failures_since_start"), usernames=Count("username", distinct=True)
    )
    return {"failures": totals["failures"] or 0, "usernames": totals["usernames"]}


class AdminLoginIpThrottleMiddleware:
    """Refuses (429) a login POST from an address with ``ADMIN_LOGIN_IP_FAILURE_LIMIT``
    recent failures, before any password is checked, and alerts the owner."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.AXES_ENABLED and request.method == "POST" and request.path_info == reverse("admin:login"):
            ip = admin_login_client_ip(request)
            counts = admin_login_ip_failures(ip=ip)
            if counts["failures"] >= settings.ADMIN_LOGIN_IP_FAILURE_LIMIT:
                owner_alert_raise(
                    kind=AlertKind.ADMIN_LOCKOUT,
                    dedupe_key=f"admin-lockout:{ip}",
                    subject=f"Admin login blocked for address {ip}",
                    body=(
                        f"{counts['failures']} failed admin logins for {counts['usernames']} usernames from {ip}; "
                        f"its login attempts are refused until {_cool_off_minutes()} minutes after "
                        f"the last failure. The attempts are in the admin under Axes → Access attempts. "
                        f"If that address is yours: manage.py axes_reset_ip {ip}"
                    ),
                )
                return HttpResponse(
                    "Too many failed logins from this address. Please try again later.",
                    status=429, content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)


def admin_lockout_alert(sender, request, username, ip_address, **kwargs) -> None:
    """``axes.signals.user_locked_out`` receiver: tell the owner (one alert per
    address and username; repeats within the dedupe window count occurrences)."""
    owner_alert_raise(
        kind=AlertKind.ADMIN_LOCKOUT,
        dedupe_key=f"admin-lockout:{ip_address}:{username}"[:200],
        subject=f"Admin login locked out: {username!r} from {ip_address}",
        body=(
            f"{settings.AXES_FAILURE_LIMIT} or more wrong passwords for {username!r} from {ip_address}. "
            f"Logins for that username from that address are refused until {_cool_off_minutes()} "
            f"minutes after the last attempt; other addresses are not affected. "
            f"If it was you: manage.py axes_reset_ip_username {ip_address} {username}"
        ),
    )


def signals_connect() -> None:
    user_locked_out.connect(admin_lockout_alert, dispatch_uid="shop.adminlogin.admin_lockout_alert")
