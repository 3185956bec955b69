"""Allow and block lists: matching a buyer's identifiers, blocking and unblocking a buyer."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from riskctl.identity import BuyerContext
from riskctl.models import IdentifierKind, ListEntry, ListType


def _live_entries(list_type: str | None):
    entries = ListEntry.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
    return entries.filter(list_type=list_type) if list_type else entries


def list_matches(*, list_type: str | None, buyer: BuyerContext) -> list[ListEntry]:
    """The live entries of one list (or of both, with None) that match any
    identifier of the buyer."""
    return list_matches_many(list_type=list_type, buyers=[buyer])[0]


def _email_domains(buyer: BuyerContext) -> list[str]:
    """The buyer's email domain and the wildcards that cover it."""
    parts = buyer.email_domain.split(".")
    return [buyer.email_domain, *(f"*.{'.'.join(parts[i:])}" for i in range(1, len(parts) - 1)),
            f"*.{buyer.email_domain}"]


def list_matches_many(*, list_type: str | None, buyers: list[BuyerContext]) -> list[list[ListEntry]]:
    """``list_matches`` for each buyer, in order, from one query."""
    exact = Q(pk__in=[])
    for buyer in buyers:
        exact |= Q(kind=IdentifierKind.EMAIL, value=buyer.email)
        if buyer.device:
            exact |= Q(kind=IdentifierKind.DEVICE, value=buyer.device)
        if buyer.phone:
            exact |= Q(kind=IdentifierKind.PHONE, value=buyer.phone)
        exact |= Q(kind=IdentifierKind.EMAIL_DOMAIN, value__in=_email_domains(buyer))
    if any(buyer.ip for buyer in buyers):  # IP entries may be ranges: matched below, fetched in the same query
        exact |= Q(kind=IdentifierKind.IP)
    entries = list(_live_entries(list_type).filter(exact).order_by("id")) if buyers else []
    networks = {entry.pk: ipaddress.ip_network(entry.value, strict=False)
                for entry in entries if entry.kind == IdentifierKind.IP}

    def matches(entry: ListEntry, buyer: BuyerContext) -> bool:
        if entry.kind == IdentifierKind.IP:
            return bool(buyer.ip) and ipaddress.ip_address(buyer.ip) in networks[entry.pk]
        if entry.kind == IdentifierKind.EMAIL_DOMAIN:
            return entry.value in _email_domains(buyer)
        return entry.value == {IdentifierKind.EMAIL: buyer.email, IdentifierKind.DEVICE: buyer.device,
                               IdentifierKind.PHONE: buyer.phone}.get(entry.kind) and bool(entry.value)

    return [[entry for entry in entries if matches(entry, buyer)] for buyer in buyers]


# How long "block this buyer" lasts unless the owner says otherwise: an email,
# a device or a phone is one person's; an IP address is often shared (mobile
# networks, offices), so it is blocked for a day only.
BLOCK_DEFAULT_DURATIONS = {
    IdentifierKind.EMAIL: timedelta(days=30),
    IdentifierKind.DEVICE: timedelta(days=30),
    IdentifierKind.PHONE: timedelta(days=30),
    IdentifierKind.IP: timedelta(hours=24),
}


def buyer_block(*, buyer: BuyerContext, reason: str, user=None, kinds=None,
                expires_at: dict | None = None) -> list[ListEntry]:
    """Block identifiers of a buyer: ``kinds`` (IdentifierKind values; None:
    every one the buyer gave), each until ``expires_at[kind]`` (a datetime,
    or None for never); a kind left out of ``expires_at`` gets
    ``BLOCK_DEFAULT_DURATIONS``. An identifier already blocked keeps the
    longer of its block and this one. Returns the entries now blocking."""
    now = timezone.now()
    expires_at = expires_at or {}
    wanted = None if kinds is None else set(kinds)
    entries = []
    for kind, value in _identifiers(buyer):
        if wanted is not None and kind not in wanted:
            continue
        until = expires_at[kind] if kind in expires_at else now + BLOCK_DEFAULT_DURATIONS[kind]
        entry, created = ListEntry.objects.get_or_create(
            list_type=ListType.BLOCK, kind=kind, value=value,
            defaults={"reason": reason[:200], "created_by": user, "expires_at": until},
        )
        live_longer = entry.expires_at is None or (until is not None and entry.expires_at >= until)
        if not created and not live_longer:
            entry.expires_at, entry.reason, entry.created_by = until, reason[:200], user
            entry.save(update_fields=["expires_at", "reason", "created_by"])
        entries.append(entry)
    return entries


def buyer_unblock(*, buyer: BuyerContext) -> list[ListEntry]:
    """Remove the buyer's exact block entries; return what still blocks them
    (a domain or a CIDR range entered separately)."""
    for kind, value in _identifiers(buyer):
        ListEntry.objects.filter(list_type=ListType.BLOCK, kind=kind, value=value).delete()
    return list_matches(list_type=ListType.BLOCK, buyer=buyer)


def _identifiers(buyer: BuyerContext):
    pairs = [(IdentifierKind.EMAIL, buyer.email), (IdentifierKind.IP, buyer.ip),
             (IdentifierKind.DEVICE, buyer.device), (IdentifierKind.PHONE, buyer.phone)]
    return [(kind, value) for kind, value in pairs if value]
