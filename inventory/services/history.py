"""Keys that were sold before the shop was: a past order brought across from
another shop (``manage.py import_from``) gets the keys it delivered there."""

from __future__ import annotations

from datetime import datetime

from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from inventory.services.owner import KeyStateError, keys_audit
from shop.project.locks import keys_lock


def keys_deliver_history(*, line, key_ids: list[int], at: datetime, actor: str, detail: str) -> list[int]:
    """Put stock keys on ``line`` as delivered at ``at``, all or none: a key
    someone else holds, sold or voided meanwhile refuses the lot
    (KEYS_NOT_AVAILABLE). The keys go straight from AVAILABLE to DELIVERED:
    they were handed over long ago, elsewhere, so no claim, no reservation
    and no delivery happens. Call inside a transaction."""
    wanted = list(dict.fromkeys(key_ids))
    ids = keys_lock(CardKey.objects.filter(pk__in=wanted, product_id=line.product_id, status=CardKeyStatus.AVAILABLE)
                    .values_list("id", flat=True), skip_locked=True)
    if len(ids) != len(wanted) or len(wanted) != len(key_ids):
        raise KeyStateError("KEYS_NOT_AVAILABLE", "a key of the order is not in stock here")
    CardKey.objects.filter(pk__in=ids, status=CardKeyStatus.AVAILABLE).update(
        status=CardKeyStatus.DELIVERED, order_line=line, reserved_at=at, delivered_at=at,
    )
    keys_audit(key_ids=ids, action=KeyAuditEvent.Action.DELIVERED, actor=actor, detail=detail)
    return ids
