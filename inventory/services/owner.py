"""The owner's actions on keys (void, unvoid, void a delivered key) and re-sealing under a new encryption key."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db import connection, transaction
from django.utils import timezone

from inventory import sealing
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from shop.project.locks import keys_lock


class KeyStateError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code



def keys_audit(*, key_ids: Iterable[int], action: str, actor: str, ip: str | None = None, detail: str = "") -> None:
    KeyAuditEvent.objects.bulk_create(
        [KeyAuditEvent(card_key_id=pk, action=action, actor=actor, ip=ip, detail=detail[:300]) for pk in key_ids]
    )


def keys_void(*, key_ids, reason: str = "", actor: str = "system", ip: str | None = None) -> list[int]:
    """Void the given keys that are still in stock; return the ids voided.

    Keys are locked in id order; a key a buyer's claim holds right now is
    skipped, not waited for (and not voided). Each void is audited.
    """
    with transaction.atomic():
        ids = keys_lock(CardKey.objects.filter(pk__in=list(key_ids), status=CardKeyStatus.AVAILABLE)
                        .values_list("id", flat=True), skip_locked=True)
        CardKey.objects.filter(pk__in=ids, status=CardKeyStatus.AVAILABLE).update(
            status=CardKeyStatus.VOID, voided_at=timezone.now(), void_reason=reason[:200]
        )
        keys_audit(key_ids=ids, action=KeyAuditEvent.Action.VOIDED, actor=actor, ip=ip, detail=reason)
    return ids


def keys_unvoid(*, key_ids, actor: str, ip: str | None = None) -> list[int]:
    """Return voided keys that were never sold to stock; return the ids."""
    with transaction.atomic():
        ids = keys_lock(CardKey.objects.filter(pk__in=list(key_ids), status=CardKeyStatus.VOID,
                                               order_line__isnull=True).values_list("id", flat=True), skip_locked=True)
        CardKey.objects.filter(pk__in=ids).update(status=CardKeyStatus.AVAILABLE, voided_at=None, void_reason="")
        keys_audit(key_ids=ids, action=KeyAuditEvent.Action.UNVOIDED, actor=actor, ip=ip)
    return ids


def key_void_delivered(*, key_id: int, line, reason: str, actor: str, ip: str | None = None) -> CardKey:
    """Void a key already handed over on ``line`` (it stays linked to the line,
    as evidence). Call inside a transaction holding the order's lock."""
    key = next(iter(keys_lock(CardKey.objects.filter(pk=key_id))), None)
    if key is None or key.order_line_id != line.pk or key.status != CardKeyStatus.DELIVERED:
        raise KeyStateError("KEY_NOT_DELIVERED_HERE", "the key is not a delivered key of this order line")
    CardKey.objects.filter(pk=key_id).update(status=CardKeyStatus.VOID, voided_at=timezone.now(), void_reason=reason[:200])
    keys_audit(key_ids=[key_id], action=KeyAuditEvent.Action.REPLACED, actor=actor, ip=ip, detail=reason)
    key.refresh_from_db()
    return key




def keys_rotate(*, batch_size: int = 1000, progress: Callable[[int], None] | None = None) -> int:
    """Re-seal every key not sealed under the primary encryption key, in
    batches (one short transaction each); return how many were re-sealed."""
    table = CardKey._meta.db_table
    rotated = 0
    last_id = 0
    while True:
        with transaction.atomic():
            rows = keys_lock(CardKey.objects.filter(pk__gt=last_id).values_list("pk", "product_id", "secret_sealed"),
                             limit=batch_size)
            if not rows:
                break
            last_id = rows[-1][0]
            stale = [(pk, product_id, bytes(sealed)) for pk, product_id, sealed in rows
                     if not sealing.sealed_by_primary(bytes(sealed))]
            if stale:
                resealed = [
                    sealing.secret_seal(sealing.secret_open(sealed, product_id=product_id), product_id=product_id)
                    for _, product_id, sealed in stale
                ]
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"""UPDATE {table} AS k SET secret_sealed = s.sealed
                            FROM unnest(%s::bigint[], %s::bytea[]) AS s(id, sealed) WHERE k.id = s.id""",
                        [[pk for pk, _, _ in stale], resealed],
                    )
                rotated += len(stale)
        if progress is not None:
            progress(len(rows))
    return rotated

