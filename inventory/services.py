"""Writing card key stock: import, claim, hand-over."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from inventory import sealing
from inventory.models import CardKey, CardKeyStatus

IMPORT_CHUNK = 1000


class KeysUnavailable(Exception):
    """Fewer available keys than the order line needs (nothing was claimed)."""

    code = "OUT_OF_STOCK"

    def __init__(self, *, wanted: int, claimed: int):
        super().__init__(f"wanted {wanted} keys, only {claimed} free")
        self.wanted = wanted
        self.claimed = claimed


@dataclass
class ImportResult:
    added: int = 0
    duplicates: int = 0
    blank: int = 0

    @property
    def total(self) -> int:
        return self.added + self.duplicates + self.blank


def keys_import(*, product, lines: Iterable[str]) -> ImportResult:
    """Add one key per line to ``product``'s stock, skipping blanks and duplicates.

    Duplicates (within the input or already in stock) are refused by the unique
    (product, fingerprint) constraint, so two concurrent imports of overlapping
    lists cannot both add a key. Works in chunks, so memory does not grow with
    the input.
    """
    result = ImportResult()
    chunk: list[str] = []
    for line in lines:
        secret = sealing.secret_normalise(line)
        if not secret:
            result.blank += 1
            continue
        chunk.append(secret)
        if len(chunk) >= IMPORT_CHUNK:
            _insert_chunk(product_id=product.pk, secrets=chunk, result=result)
            chunk = []
    if chunk:
        _insert_chunk(product_id=product.pk, secrets=chunk, result=result)
    return result


def _insert_chunk(*, product_id: int, secrets: list[str], result: ImportResult) -> None:
    table = CardKey._meta.db_table
    now = timezone.now()
    sealed = [sealing.secret_seal(s) for s in secrets]
    prints = [sealing.secret_fingerprint(s) for s in secrets]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (product_id, secret_sealed, fingerprint, status, created_at)
            SELECT %s, s.sealed, s.fingerprint, %s, %s
            FROM unnest(%s::bytea[], %s::text[]) WITH ORDINALITY AS s(sealed, fingerprint, n)
            ORDER BY s.n
            ON CONFLICT (product_id, fingerprint) DO NOTHING
            """,
            [product_id, CardKeyStatus.AVAILABLE, now, sealed, prints],
        )
        added = cursor.rowcount
    result.added += added
    result.duplicates += len(secrets) - added


def keys_reserve(*, line) -> list[int]:
    """Claim ``line.quantity`` available keys of the line's product for it.

    Call inside a transaction. One statement: the oldest free keys are locked
    with SKIP LOCKED (concurrent buyers take different keys instead of queueing
    on the same rows) and moved to RESERVED; the affected rows are counted. A
    short claim is undone as a whole and raises ``KeysUnavailable``: an order
    gets all its keys or none.
    """
    table = CardKey._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH picked AS (
                SELECT id FROM {table}
                WHERE product_id = %s AND status = %s
                ORDER BY id
                LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {table} AS k
            SET status = %s, order_line_id = %s, reserved_at = %s
            FROM picked
            WHERE k.id = picked.id AND k.status = %s
            RETURNING k.id
            """,
            [
                line.product_id, CardKeyStatus.AVAILABLE, line.quantity,
                CardKeyStatus.RESERVED, line.pk, timezone.now(), CardKeyStatus.AVAILABLE,
            ],
        )
        claimed = [row[0] for row in cursor.fetchall()]
        if len(claimed) != line.quantity:
            raise KeysUnavailable(wanted=line.quantity, claimed=len(claimed))
    return sorted(claimed)


def keys_mark_delivered(*, line) -> int:
    """Move the line's reserved keys to DELIVERED. Call inside a transaction."""
    return CardKey.objects.filter(order_line=line, status=CardKeyStatus.RESERVED).update(
        status=CardKeyStatus.DELIVERED, delivered_at=timezone.now()
    )


def keys_release(*, line) -> int:
    """Return the line's RESERVED keys to stock (reject, refund). Call inside a
    transaction. Delivered keys are never released: the buyer has seen them."""
    return CardKey.objects.filter(order_line=line, status=CardKeyStatus.RESERVED).update(
        status=CardKeyStatus.AVAILABLE, order_line=None, reserved_at=None
    )


def keys_void(*, key_ids) -> list[int]:
    """Void the given keys that are still in stock; return the ids voided.

    Call inside a transaction. Keys are locked in id order; a key a buyer's
    claim holds right now is skipped, not waited for (and not voided).
    """
    ids = list(
        CardKey.objects.filter(pk__in=list(key_ids), status=CardKeyStatus.AVAILABLE)
        .order_by("id")
        .select_for_update(skip_locked=True)
        .values_list("id", flat=True)
    )
    CardKey.objects.filter(pk__in=ids, status=CardKeyStatus.AVAILABLE).update(status=CardKeyStatus.VOID)
    return ids
