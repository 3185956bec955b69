"""Checkout rate limits (web form and API share them): per buyer, and a ceiling per address."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django_ratelimit.core import get_usage

from riskctl.identity import device_id, email_normalise, ratelimit_ip

# One budget for the web form and the API: a buyer is a buyer on either.
CHECKOUT_BUYER_GROUP = "shop.checkout.buyer"
CHECKOUT_IP_GROUP = "shop.checkout.ip"


@dataclass(frozen=True)
class CheckoutLimited:
    scope: str  # "BUYER" or "ADDRESS": which limit was reached
    retry_after: int  # seconds until its window ends


def _rate_or_off(rate: str) -> str | None:
    """A django-ratelimit rate; "" or "0" turn the limit off (None: never limited)."""
    rate = (rate or "").strip()
    return None if rate in ("", "0") else rate


def checkout_rate_per_buyer(group, request) -> str | None:
    return _rate_or_off(settings.CHECKOUT_RATE_PER_BUYER)


def checkout_rate_per_ip(group, request) -> str | None:
    return _rate_or_off(settings.CHECKOUT_RATE_PER_IP)


def checkout_buyer_key(*, request, email, device) -> str:
    """A hash of what identifies a buyer: client IP (as rate limits and risk
    rules see it, behind TRUSTED_PROXIES), first-party device id and the
    normalised email. Hashed: no email reaches the counters' keys."""
    email = email_normalise(email) if isinstance(email, str) else ""
    device = device_id(request, device if isinstance(device, str) else "")
    identity = "\n".join((ratelimit_ip(request), device, email))
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def checkout_limit_reached(request, *, email, device) -> CheckoutLimited | None:
    """Count this checkout POST against the per-buyer limit and the per-address
    ceiling (both counted on every attempt) and say which one, if any, it is
    over. ``email`` and ``device`` are what the buyer submitted, unchecked."""
    buyer = checkout_buyer_key(request=request, email=email, device=device)
    by_ip = get_usage(request, group=CHECKOUT_IP_GROUP, key="ip", rate=checkout_rate_per_ip, method="POST",
                      increment=True)
    by_buyer = get_usage(request, group=CHECKOUT_BUYER_GROUP, key=lambda group, request: buyer,
                         rate=checkout_rate_per_buyer, method="POST", increment=True)
    for scope, usage in (("ADDRESS", by_ip), ("BUYER", by_buyer)):
        if usage is not None and usage["should_limit"]:  # None: limit off, or the cache is down (fail open)
            # time_left is -1 when the count could not be read: a minute.
            wait = max(usage["time_left"], 1) if usage["time_left"] >= 0 else 60
            return CheckoutLimited(scope=scope, retry_after=wait)
    return None
