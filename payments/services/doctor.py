"""The payment doctor: before going live, check that each enabled payment
method can take money, and say exactly what to fix.

- the shop: SITE_URL is https and reaches THIS shop (its own /healthz,
  fetched through SITE_URL, carries this shop's site id), since that is
  where every provider sends its notify;
- each method: its credentials are complete; the provider answers a
  properly signed query about an order that does not exist with "not found"
  (so the merchant id and keys work, not "bad signature"); the provider's
  clock agrees with ours (signed timestamps are refused beyond a few
  minutes); and the notify URL the provider will call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from payments.methods import MethodConfig, methods_all, provider_for
from payments.providers.base import ProviderUnreachable
from payments.providers.http import http_call
from shop.access import site_id

OK, WARN, FAIL, INFO = "OK", "WARN", "FAIL", "INFO"
CLOCK_SKEW_LIMIT_SECONDS = 60


@dataclass(frozen=True)
class DoctorCheck:
    subject: str  # "site" or a method id
    name: str
    status: str  # OK, WARN, FAIL, INFO
    detail: str
    fix: str = ""


def _site_checks() -> list[DoctorCheck]:
    checks = []
    url = settings.SITE_URL.rstrip("/")
    if url.startswith("https://"):
        checks.append(DoctorCheck("site", "SITE_URL is https", OK, url))
    else:
        checks.append(DoctorCheck(
            "site", "SITE_URL is https", WARN if settings.DEBUG else FAIL, f"SITE_URL is {url}",
            "Set SITE_URL to the https:// address buyers and providers use, e.g. SITE_URL=https://shop.example.com "
            "(providers refuse, or leak, notify URLs over plain http)."))
    health = url + reverse("shop:healthz")
    try:
        answer = http_call("GET", health, headers={"Accept": "application/json"}, timeout=10)
    except ProviderUnreachable as exc:
        checks.append(DoctorCheck(
            "site", "SITE_URL reaches this shop", FAIL, f"GET {health}: {exc}",
            "Providers send their notify to SITE_URL: make it resolve and route to this shop (DNS, the load "
            "balancer or reverse proxy, the firewall), then run the doctor again."))
        return checks
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = {}
    if not isinstance(body, dict) or body.get("site") != site_id():
        checks.append(DoctorCheck(
            "site", "SITE_URL reaches this shop", FAIL,
            f"GET {health} answered HTTP {answer.status}, but not as this shop",
            "SITE_URL reaches another server (another shop, a default page, a stale deploy): point it at this one."))
    elif answer.status != 200:
        checks.append(DoctorCheck(
            "site", "SITE_URL reaches this shop", WARN, f"this shop answered, but unhealthy: {body.get('status')}",
            "See /healthz: the database, Redis or the sweeper is not well."))
    else:
        checks.append(DoctorCheck("site", "SITE_URL reaches this shop", OK, f"{health} answered as this shop"))
    return checks


def _method_checks(config: MethodConfig, now: datetime) -> list[DoctorCheck]:
    provider = provider_for(config)
    checks = [DoctorCheck(config.id, "notify URL", INFO, provider.notify_url(),
                          "Give this URL to the provider where it asks for the notify / webhook URL."
                          if config.provider in ("stripe", "wechat") else "")]
    if not provider.enabled():
        missing = [name for name in provider.required_secrets if not config.secret(name)]
        missing += [name for name in provider.required_settings if not getattr(config, name)]
        checks.append(DoctorCheck(config.id, "credentials complete", FAIL, f"missing: {', '.join(missing)}",
                                  f"Enter {', '.join(missing)} for {config.id} in the admin (Payments → Payment "
                                  "methods) or its environment variables."))
        return checks
    result = provider.probe()
    if result.code == "NOT_SUPPORTED":
        checks.append(DoctorCheck(config.id, "credentials work", INFO, result.detail))
    else:
        checks.append(DoctorCheck(config.id, "credentials work", OK if result.ok else FAIL,
                                  f"{result.code}: {result.detail}", result.fix))
    if result.server_time is not None:
        skew = (now - result.server_time).total_seconds()
        if abs(skew) > CLOCK_SKEW_LIMIT_SECONDS:
            checks.append(DoctorCheck(
                config.id, "clock agrees with the provider's", FAIL,
                f"this server's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} {config.provider}'s",
                "Turn on time sync on this server (timedatectl set-ntp true, or chrony): signed notices and "
                "requests carry timestamps that are refused when the clocks disagree."))
        else:
            checks.append(DoctorCheck(config.id, "clock agrees with the provider's", OK, f"within {abs(skew):.0f} s"))
    if config.query_before_credit and provider.can_query:
        checks.append(DoctorCheck(config.id, "query before credit", INFO, "on: notices are confirmed with the "
                                  "provider before they pay an order"))
    return checks


def payments_doctor(*, method_id: str = "") -> list[DoctorCheck]:
    """Run every check; network calls, outside any transaction."""
    checks = _site_checks()
    now = timezone.now()
    methods = [m for m in methods_all() if m.enabled and (not method_id or m.id == method_id)]
    if method_id and not methods:
        checks.append(DoctorCheck(method_id, "method exists", FAIL, f"no enabled payment method {method_id!r}",
                                  "Add or enable it in the admin (Payments → Payment methods)."))
    if not methods and not method_id:
        checks.append(DoctorCheck("shop", "a way to pay", FAIL, "no payment method is enabled",
                                  "Add one in the admin (Payments → Payment methods) or set EPAY_* / ALIPAY_* / "
                                  "WECHATPAY_* / EPUSDT_* / STRIPE_*."))
    for config in methods:
        checks.extend(_method_checks(config, now))
    return checks
