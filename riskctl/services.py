"""Risk decisions. For now: the block list, consulted at checkout."""

from __future__ import annotations

import ipaddress
import secrets

from django.db.models import Q
from django.utils import timezone

from riskctl.models import BlockEntry, BlockKind


class CheckoutBlocked(Exception):
    """The buyer may not place this order. ``ref`` lets them appeal without
    telling them (or a fraudster) which rule matched."""

    code = "BLOCKED"

    def __init__(self, *, ref: str):
        super().__init__(f"checkout blocked (ref {ref})")
        self.ref = ref


def email_normalise(email: str) -> str:
    return email.strip().lower()


def ip_normalise(ip: str) -> str:
    return str(ipaddress.ip_address(ip.strip()))


def checkout_screen(*, email: str, ip: str | None) -> None:
    """Raise ``CheckoutBlocked`` when an identifier of the buyer is blocked."""
    identifiers = Q(kind=BlockKind.EMAIL, value=email_normalise(email))
    if ip:
        identifiers |= Q(kind=BlockKind.IP, value=ip_normalise(ip))
    live = Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    if BlockEntry.objects.filter(identifiers & live).exists():
        raise CheckoutBlocked(ref=f"R{secrets.token_hex(4).upper()}")
