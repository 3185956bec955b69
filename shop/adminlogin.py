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

Wrong two-factor codes (shop/twofactor/) are failures too, for the same
username and address: ``admin_login_failure_record`` turns them into axes
failures, so a few wrong codes lock the pair like wrong passwords do. While a
code is still owed, a right password alone does not forget earlier failures
(``AdminLoginAxesHandler``), or someone who has the password could sign in
again between guesses; the accepted code does.

The client address is the project's own (``riskctl.identity.client_ip``):
``X-Forwarded-For`` counts only from ``TRUSTED_PROXIES``, so a spoofed header
can neither dodge a lockout nor frame another address. Each lockout raises an
owner alert; the attempted password is never in it (axes masks it in its own
rows too).
"""

from __future__ import annotations

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
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


def _throttled_paths() -> set[str]:
    # The password form and the two code forms: each refuses an address with too many failures.
    return {reverse("admin:login"), reverse("admin-2fa-verify"), reverse("admin-2fa-enrol")}


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
        if settings.AXES_ENABLED and request.method == "POST" and request.path_info in _throttled_paths():
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
            f"{settings.AXES_FAILURE_LIMIT} or more wrong passwords or sign-in codes for {username!r} "
            f"from {ip_address}. "
            f"Logins for that username from that address are refused until {_cool_off_minutes()} "
            f"minutes after the last attempt; other addresses are not affected. "
            f"If it was you: manage.py axes_reset_ip_username {ip_address} {username}"
        ),
    )


def signals_connect() -> None:
    user_locked_out.connect(admin_lockout_alert, dispatch_uid="shop.adminlogin.admin_lockout_alert")


class AdminLoginAxesHandler(AxesDatabaseHandler):
    """axes' database handler, except that a right password from someone who still
    owes a two-factor code does not reset the failures (``AXES_RESET_ON_SUCCESS``):
    the accepted code does, through ``admin_login_failures_forget``."""

    def user_logged_in(self, sender, request, user, **kwargs):
        from shop.twofactor.services import twofactor_applies

        request.axes_reset_waits_for_code = twofactor_applies(user=user)
        super().user_logged_in(sender, request, user, **kwargs)

    def reset_user_attempts(self, request, credentials=None) -> int:
        if getattr(request, "axes_reset_waits_for_code", False):
            return 0
        return super().reset_user_attempts(request, credentials)


def admin_login_locked(*, request, username: str) -> bool:
    """Whether axes refuses ``username`` from this request's address; if so the request
    is marked, and ``AxesMiddleware`` answers it with the lockout response (429)."""
    if not settings.AXES_ENABLED:
        return False
    locked = AxesProxyHandler.is_locked(request, {"username": username})
    if locked:
        request.axes_locked_out = True
        request.axes_credentials = {"username": username}
    return locked


def admin_login_failure_record(*, request, username: str) -> bool:
    """A wrong sign-in code for ``username``: an axes failure, as a wrong password is.
    Returns whether that locked the pair out (the request is then marked as above)."""
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
    return bool(getattr(request, "axes_locked_out", False))


def admin_login_failures_forget(*, request, username: str) -> None:
    """The sign-in is complete (code accepted): forget the pair's failures, as axes
    does after a password when no code is owed."""
    if settings.AXES_ENABLED and settings.AXES_RESET_ON_SUCCESS:
        AxesProxyHandler.update_request(request)
        AxesProxyHandler.get_implementation().reset_user_attempts(request, {"username": username})
