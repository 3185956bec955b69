"""Allow and block lists: matching a buyer's identifiers, blocking and unblocking a buyer."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django.utils import timezone

from riskctl.identity import BuyerContext
from riskctl.models import IdentifierKind, ListEntry, ListType


def list_matches(*, list_type: str | None, buyer: BuyerContext) -> list[ListEntry]:
    """The live entries of one list (or of both, with None) that match any
    identifier of the buyer."""
    return list_matches_many(list_type=list_type, buyers=[buyer])[0]


def _email_domains(buyer: BuyerContext) -> list[str]:
    """The buyer's email domain and the wildcards that cover it."""
    parts = buyer.email_domain.split(".")
    return [buyer.email_domain, *(f"*.{'.'.join(parts[i:])}" for i in range(1, len(parts) - 1)),
            f"*.{buyer.email_domain}"]


# One statement for any number of buyers, written out: the ORM's OR of one
# Q per identifier cost ≈ 0.5 ms of CPU to build and compile on every
# checkout (bench/profile_checkout.py). IP entries may be ranges: every live
# one is fetched and matched here.
_MATCHES_SQL = f"""
    SELECT id, list_type, kind, value, reason, created_by_id, created_at, expires_at
    FROM {ListEntry._meta.db_table}
    WHERE (expires_at IS NULL OR expires_at > %(now)s) AND (%(list_type)s::text IS NULL OR list_type = %(list_type)s)
      AND ((kind = %(email_kind)s AND value = ANY(%(emails)s))
        OR (kind = %(device_kind)s AND value = ANY(%(devices)s))
        OR (kind = %(phone_kind)s AND value = ANY(%(phones)s))
        OR (kind = %(domain_kind)s AND value = ANY(%(domains)s))
        OR (kind = %(ip_kind)s AND %(any_ip)s))
    ORDER BY id
"""


def list_matches_many(*, list_type: str | None, buyers: list[BuyerContext]) -> list[list[ListEntry]]:
    """``list_matches`` for each buyer, in order, from one query."""
    if not buyers:
        return []
    entries = list(ListEntry.objects.raw(_MATCHES_SQL, {
        "now": timezone.now(), "list_type": list_type,
        "email_kind": IdentifierKind.EMAIL.value, "emails": [buyer.email for buyer in buyers],
        "device_kind": IdentifierKind.DEVICE.value, "devices": [buyer.device for buyer in buyers if buyer.device],
        "phone_kind": IdentifierKind.PHONE.value, "phones": [buyer.phone for buyer in buyers if buyer.phone],
        "domain_kind": IdentifierKind.EMAIL_DOMAIN.value,
        "domains": sorted({domain for buyer in buyers for domain in _email_domains(buyer)}),
        "ip_kind": IdentifierKind.IP.value, "any_ip": any(buyer.ip for buyer in buyers),
    }))
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
