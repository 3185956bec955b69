"""Writing card key stock: import, claim, hand-over, void, rotation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from inventory import sealing
from inventory.keyrules import LOOSE_RULES
from inventory.models import CardKey, CardKeyStatus, ImportBatch, KeyAuditEvent, KeyPolicy

IMPORT_CHUNK = 5000
# Line-level problems kept for the report; the counts stay exact beyond it.
REPORT_ISSUES_MAX = 1000


class KeysUnavailable(Exception):
    """Fewer available keys than the order line needs (nothing was claimed)."""

    code = "OUT_OF_STOCK"

    def __init__(self, *, wanted: int, claimed: int):
        super().__init__(f"wanted {wanted} keys, only {claimed} free")
        self.wanted = wanted
        self.claimed = claimed


class KeyStateError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def key_policy_get(*, product_id: int) -> KeyPolicy:
    """The product's policy, or the default one (unsaved) if it has none."""
    return KeyPolicy.objects.filter(product_id=product_id).first() or KeyPolicy(product_id=product_id)


# --- import -------------------------------------------------------------------


@dataclass(frozen=True)
class ImportIssue:
    line: int
    code: str  # DUPLICATE_IN_FILE, DUPLICATE_IN_STOCK, DUPLICATE_SOLD, DUPLICATE_VOID, INVALID
    detail: str


# A duplicate of a key already there, by that key's status: the code and what the report says.
_DUPLICATE_OF = {
    CardKeyStatus.AVAILABLE: ("DUPLICATE_IN_STOCK", "already in stock"),
    CardKeyStatus.RESERVED: ("DUPLICATE_IN_STOCK", "already in stock"),
    CardKeyStatus.DELIVERED: ("DUPLICATE_SOLD", "already sold"),
    CardKeyStatus.VOID: ("DUPLICATE_VOID", "voided earlier"),
}


@dataclass
class ImportReport:
    batch_id: int
    lines: int = 0
    added: int = 0
    duplicates: int = 0
    invalid: int = 0
    blank: int = 0
    issues: list[ImportIssue] = field(default_factory=list)

    @property
    def issues_truncated(self) -> bool:
        return len(self.issues) < self.duplicates + self.invalid

    def note(self, issue: ImportIssue) -> None:
        if len(self.issues) < REPORT_ISSUES_MAX:
            self.issues.append(issue)

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.duplicates} duplicate, {self.invalid} invalid, {self.blank} blank "
            f"({self.lines} lines)"
        )


def key_entries(stream: Iterable[str], *, delimiter: str = "\n") -> Iterator[tuple[int, str]]:
    """(line number, text) for every entry of a key list, streamed.

    ``delimiter`` "\\n" means one key per line; any other string also splits
    each line (comma-separated, ``;``, a tab...). Entries are trimmed; blank
    ones are still yielded so the report can count them.
    """
    for number, line in enumerate(stream, start=1):
        line = line.rstrip("\r\n")
        if delimiter == "\n":
            yield number, line.strip()
        else:
            for piece in line.split(delimiter):
                yield number, piece.strip()


def keys_import(
    *,
    product,
    entries: Iterable[tuple[int, str]],
    source: str,
    created_by=None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Add keys to ``product``'s stock under a new ImportBatch; report every line.

    Each key is checked against the product's format, then sealed and inserted
    in chunks (one transaction each) with ON CONFLICT DO NOTHING on the unique
    (product, fingerprint): a duplicate, within the file or already in stock,
    is refused by the database itself, so two concurrent imports of
    overlapping files cannot both add a key, and memory stays flat however
    long the input. The rows that lost the conflict are looked up to say which
    line came first. ``progress`` is called with the number of entries read.
    """
    rules = key_policy_get(product_id=product.pk).rules
    batch = ImportBatch.objects.create(product=product, created_by=created_by, source=source[:300])
    report = ImportReport(batch_id=batch.pk)
    chunk: list[tuple[int, str, str, str]] = []
    for number, text in entries:
        report.lines += 1
        if not text:
            report.blank += 1
        elif problem := rules.format_problem(text):
            report.invalid += 1
            report.note(ImportIssue(number, "INVALID", problem))
        else:
            chunk.append((number, text, sealing.secret_fingerprint(rules.normalise(text)),
                          sealing.secret_fingerprint(LOOSE_RULES.normalise(text))))
            if len(chunk) >= IMPORT_CHUNK:
                _import_chunk(product_id=product.pk, batch_id=batch.pk, chunk=chunk, report=report)
                chunk = []
        if progress is not None and report.lines % 1000 == 0:
            progress(report.lines)
    if chunk:
        _import_chunk(product_id=product.pk, batch_id=batch.pk, chunk=chunk, report=report)
    if progress is not None:
        progress(report.lines)
    ImportBatch.objects.filter(pk=batch.pk).update(
        lines=report.lines, added=report.added, duplicates=report.duplicates, invalid=report.invalid,
        blank=report.blank,
    )
    if report.added:
        transaction.on_commit(lambda: stock_added_announce(product_id=product.pk), robust=True)
    return report


def stock_added_announce(*, product_id: int) -> None:
    """Keys of the product were added and committed: call ``STOCK_ADDED_HOOK``
    (a dotted path, as EMAIL_BACKEND; by default the shop's back-in-stock
    emails), which a lower app names rather than imports. A network call:
    only after commit (``keys_import`` registers it with ``on_commit``)."""
    hook = getattr(settings, "STOCK_ADDED_HOOK", "shop.services.stock_alerts.stock_alerts_enqueue")
    if hook:
        import_string(hook)(product_id=product_id)


def _import_chunk(*, product_id: int, batch_id: int, chunk: list[tuple[int, str, str, str]],
                  report: ImportReport) -> None:
    table = CardKey._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (product_id, batch_id, import_line, secret_sealed, fingerprint, loose_fingerprint,
                                 status, created_at, void_reason)
            SELECT %s, %s, s.line, s.sealed, s.fingerprint, s.loose, %s, %s, ''
            FROM unnest(%s::int[], %s::bytea[], %s::text[], %s::text[])
                 WITH ORDINALITY AS s(line, sealed, fingerprint, loose, n)
            ORDER BY s.n
            ON CONFLICT (product_id, fingerprint) DO NOTHING
            RETURNING fingerprint
            """,
            [
                product_id, batch_id, CardKeyStatus.AVAILABLE, timezone.now(),
                [number for number, _, _, _ in chunk],
                [sealing.secret_seal(text, product_id=product_id) for _, text, _, _ in chunk],
                [fp for _, _, fp, _ in chunk],
                [loose for _, _, _, loose in chunk],
            ],
        )
        # Rows go in in input order, so the first entry of each inserted
        # fingerprint is the one that made it; every other entry lost.
        inserted = {row[0] for row in cursor.fetchall()}
        losers = []
        for number, _, fp, _ in chunk:
            if fp in inserted:
                inserted.discard(fp)
            else:
                losers.append((number, fp))
        report.added += len(chunk) - len(losers)
        report.duplicates += len(losers)
        # With DEBUG on, Django keeps the SQL of recent queries, here with every
        # sealed key of the chunk in it: drop it, or memory grows with the file.
        connection.queries_log.clear()
        if not losers:
            return
        cursor.execute(
            f"SELECT fingerprint, batch_id, import_line, status FROM {table} "
            "WHERE product_id = %s AND fingerprint = ANY(%s)",
            [product_id, list({fp for _, fp in losers})],
        )
        first = {fp: (batch, line, status) for fp, batch, line, status in cursor.fetchall()}
    for number, fp in losers:
        batch, line, status = first.get(fp, (None, None, CardKeyStatus.AVAILABLE))
        code, detail = _DUPLICATE_OF[status]
        if batch == batch_id:
            report.note(ImportIssue(number, "DUPLICATE_IN_FILE", f"same key as line {line}"))
        elif batch is not None:
            report.note(ImportIssue(number, code, f"{detail} (import #{batch}, line {line})"))
        else:
            report.note(ImportIssue(number, code, detail))


def import_batch_void(*, batch_id: int, actor: str, ip: str | None = None) -> int:
    """Void the batch's keys still in stock (sold ones stay sold); return how many."""
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().get(pk=batch_id)
        key_ids = CardKey.objects.filter(batch_id=batch_id, status=CardKeyStatus.AVAILABLE).values_list("pk", flat=True)
        voided = keys_void(key_ids=key_ids, reason=f"import #{batch_id} voided", actor=actor, ip=ip)
        ImportBatch.objects.filter(pk=batch.pk).update(
            voided_at=batch.voided_at or timezone.now(), voided_keys=batch.voided_keys + len(voided)
        )
    return len(voided)


# --- claim and hand-over --------------------------------------------------------


def _line_detail(line) -> str:
    # The order number is already loaded wherever the paid flow passes a line
    # (it comes from ``order.lines``); the line id is the fallback.
    if line._meta.get_field("order").is_cached(line):
        return f"order {line.order.order_no}"
    return f"order line {line.pk}"


def keys_reserve(*, line, quantity: int | None = None, actor: str = "system") -> list[int]:
    """Claim ``quantity`` (default: the line's quantity) available keys of the
    line's product for it.

    Call inside a transaction. One statement: the oldest free keys are locked
    with SKIP LOCKED (concurrent buyers take different keys instead of queueing
    on the same rows) and moved to RESERVED, only if all ``quantity`` were
    found; the affected rows are counted. A short claim changes nothing and
    raises ``KeysUnavailable``: an order gets all its keys or none, with no
    savepoint needed around a single claim.
    """
    wanted = line.quantity if quantity is None else quantity
    table = CardKey._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        # The audit rows (SOLD) are written by the same statement: no extra round trip.
        cursor.execute(
            f"""
            WITH picked AS (
                SELECT id FROM {table}
                WHERE product_id = %s AND status = %s
                ORDER BY id + 0  -- the claim index's order (see CardKey.Meta.indexes)
                LIMIT %s
                FOR UPDATE{" SKIP LOCKED" if settings.INVENTORY_CLAIM_SKIP_LOCKED else ""}
            ), claimed AS (
                UPDATE {table} AS k
                SET status = %s, order_line_id = %s, reserved_at = %s
                FROM picked
                WHERE k.id = picked.id AND k.status = %s AND (SELECT count(*) FROM picked) = %s
                RETURNING k.id
            ), audited AS (
                INSERT INTO {KeyAuditEvent._meta.db_table} (card_key_id, action, actor, ip, at, detail)
                SELECT id, %s, %s, NULL, %s, %s FROM claimed
            )
            SELECT (SELECT count(*) FROM picked), array(SELECT id FROM claimed)
            """,
            [
                line.product_id, CardKeyStatus.AVAILABLE, wanted,
                CardKeyStatus.RESERVED, line.pk, now, CardKeyStatus.AVAILABLE, wanted,
                KeyAuditEvent.Action.SOLD, actor, now, _line_detail(line),
            ],
        )
        free, claimed = cursor.fetchone()
    if not claimed:
        raise KeysUnavailable(wanted=wanted, claimed=free)
    if len(claimed) != wanted:  # rows changed under their lock: let the caller's transaction roll back
        raise RuntimeError(f"claimed {len(claimed)} of {wanted} locked keys")
    return sorted(claimed)


@dataclass(frozen=True)
class LineClaim:
    """One order line of a batch claim: its id, how many keys, and the audit
    detail ("order 2611…")."""

    line_id: int
    quantity: int
    detail: str


@dataclass
class BatchClaim:
    delivered: dict[int, list[int]]  # line id → its keys, now DELIVERED
    short: dict[int, tuple[int, int]]  # line id → (wanted, free): nothing claimed


def keys_deliver_many(*, product_id: int, lines: list[LineClaim], actor: str = "system") -> BatchClaim:
    """Claim and hand over keys of one product for many order lines at once:
    the batch form of ``keys_reserve`` then ``keys_mark_delivered``, in one
    statement. Call inside a transaction.

    The oldest free keys are locked with SKIP LOCKED (as in ``keys_reserve``)
    and dealt out to the lines in the order given; a line gets all its keys
    or none, and once one line cannot be served the lines after it are not
    either (first come, first served, as the fill queue is). Each key is
    audited SOLD and DELIVERED, as a key claimed and handed over alone is.
    """
    if not lines:
        return BatchClaim(delivered={}, short={})
    table = CardKey._meta.db_table
    now = timezone.now()
    wanted_total = sum(line.quantity for line in lines)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH wanted AS (
                SELECT line_id, quantity, detail, sum(quantity) OVER (ORDER BY ord) AS upto
                FROM unnest(%(lines)s::bigint[], %(quantities)s::int[], %(details)s::text[])
                     WITH ORDINALITY AS w(line_id, quantity, detail, ord)
            ), locked AS (
                SELECT id FROM {table}
                WHERE product_id = %(product)s AND status = %(available)s
                ORDER BY id + 0  -- the claim index's order (see CardKey.Meta.indexes)
                LIMIT %(total)s
                FOR UPDATE{" SKIP LOCKED" if settings.INVENTORY_CLAIM_SKIP_LOCKED else ""}
            ), picked AS (
                SELECT id, row_number() OVER (ORDER BY id) AS rn FROM locked
            ), served AS (
                SELECT * FROM wanted WHERE upto <= (SELECT count(*) FROM picked)
            ), claimed AS (
                UPDATE {table} AS k
                SET status = %(delivered)s, order_line_id = s.line_id, reserved_at = %(now)s, delivered_at = %(now)s
                FROM picked p JOIN served s ON p.rn > s.upto - s.quantity AND p.rn <= s.upto
                WHERE k.id = p.id AND k.status = %(available)s
                RETURNING k.id, k.order_line_id, s.detail
            ), audited AS (
                INSERT INTO {KeyAuditEvent._meta.db_table} (card_key_id, action, actor, ip, at, detail)
                SELECT c.id, a.action, %(actor)s, NULL, %(now)s, c.detail
                FROM claimed c CROSS JOIN (VALUES (1, %(sold)s), (2, %(handed)s)) AS a(step, action)
                ORDER BY c.id, a.step
            )
            SELECT (SELECT count(*) FROM picked), array(SELECT order_line_id FROM claimed ORDER BY id),
                   array(SELECT id FROM claimed ORDER BY id)
            """,
            {
                "lines": [line.line_id for line in lines], "quantities": [line.quantity for line in lines],
                "details": [line.detail for line in lines], "product": product_id,
                "available": CardKeyStatus.AVAILABLE, "delivered": CardKeyStatus.DELIVERED, "total": wanted_total,
                "now": now, "actor": actor, "sold": KeyAuditEvent.Action.SOLD,
                "handed": KeyAuditEvent.Action.DELIVERED,
            },
        )
        free, line_ids, key_ids = cursor.fetchone()
    delivered: dict[int, list[int]] = {}
    for line_id, key_id in zip(line_ids, key_ids):
        delivered.setdefault(line_id, []).append(key_id)
    short, left = {}, free
    for line in lines:
        got = delivered.get(line.line_id)
        if got is None:
            short[line.line_id] = (line.quantity, max(0, left))
        elif len(got) != line.quantity:  # rows changed under their lock: let the caller's transaction roll back
            raise RuntimeError(f"claimed {len(got)} of {line.quantity} locked keys")
        left -= line.quantity
    return BatchClaim(delivered=delivered, short=short)


def keys_mark_delivered(*, line, actor: str = "system") -> int:
    """Move the line's reserved keys to DELIVERED (audited). Call inside a transaction."""
    now = timezone.now()
    return _keys_move(line=line, sets="status = %s, delivered_at = %s", set_params=[CardKeyStatus.DELIVERED, now],
                      action=KeyAuditEvent.Action.DELIVERED, actor=actor, now=now)


def _keys_move(*, line, sets: str, set_params: list, action: str, actor: str, now) -> int:
    """Move the line's RESERVED keys (``SET sets``) and write one audit row
    each, in one statement."""
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH moved AS (
                UPDATE {table} SET {sets}
                WHERE order_line_id = %s AND status = %s
                RETURNING id
            ), audited AS (
                INSERT INTO {KeyAuditEvent._meta.db_table} (card_key_id, action, actor, ip, at, detail)
                SELECT id, %s, %s, NULL, %s, %s FROM moved
            )
            SELECT count(*) FROM moved
            """,
            [*set_params, line.pk, CardKeyStatus.RESERVED, action, actor, now, _line_detail(line)],
        )
        return cursor.fetchone()[0]


def keys_release(*, line, actor: str = "system") -> int:
    """Return the line's RESERVED keys to stock (reject, refund). Call inside a
    transaction. Delivered keys are never released: the buyer has seen them."""
    return _keys_move(line=line, sets="status = %s, order_line_id = NULL, reserved_at = NULL",
                      set_params=[CardKeyStatus.AVAILABLE], action=KeyAuditEvent.Action.RELEASED, actor=actor,
                      now=timezone.now())


# --- owner actions ----------------------------------------------------------------


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
        ids = list(
            CardKey.objects.filter(pk__in=list(key_ids), status=CardKeyStatus.AVAILABLE)
            .order_by("id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        CardKey.objects.filter(pk__in=ids, status=CardKeyStatus.AVAILABLE).update(
            status=CardKeyStatus.VOID, voided_at=timezone.now(), void_reason=reason[:200]
        )
        keys_audit(key_ids=ids, action=KeyAuditEvent.Action.VOIDED, actor=actor, ip=ip, detail=reason)
    return ids


def keys_unvoid(*, key_ids, actor: str, ip: str | None = None) -> list[int]:
    """Return voided keys that were never sold to stock; return the ids."""
    with transaction.atomic():
        ids = list(
            CardKey.objects.filter(pk__in=list(key_ids), status=CardKeyStatus.VOID, order_line__isnull=True)
            .order_by("id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        CardKey.objects.filter(pk__in=ids).update(status=CardKeyStatus.AVAILABLE, voided_at=None, void_reason="")
        keys_audit(key_ids=ids, action=KeyAuditEvent.Action.UNVOIDED, actor=actor, ip=ip)
    return ids


def key_void_delivered(*, key_id: int, line, reason: str, actor: str, ip: str | None = None) -> CardKey:
    """Void a key already handed over on ``line`` (it stays linked to the line,
    as evidence). Call inside a transaction holding the order's lock."""
    key = CardKey.objects.select_for_update().filter(pk=key_id).first()
    if key is None or key.order_line_id != line.pk or key.status != CardKeyStatus.DELIVERED:
        raise KeyStateError("KEY_NOT_DELIVERED_HERE", "the key is not a delivered key of this order line")
    CardKey.objects.filter(pk=key_id).update(status=CardKeyStatus.VOID, voided_at=timezone.now(), void_reason=reason[:200])
    keys_audit(key_ids=[key_id], action=KeyAuditEvent.Action.REPLACED, actor=actor, ip=ip, detail=reason)
    key.refresh_from_db()
    return key


# --- rotation -------------------------------------------------------------------------


def keys_rotate(*, batch_size: int = 1000, progress: Callable[[int], None] | None = None) -> int:
    """Re-seal every key not sealed under the primary encryption key, in
    batches (one short transaction each); return how many were re-sealed."""
    table = CardKey._meta.db_table
    rotated = 0
    last_id = 0
    while True:
        with transaction.atomic():
            rows = list(
                CardKey.objects.filter(pk__gt=last_id).order_by("pk")
                .select_for_update().values_list("pk", "product_id", "secret_sealed")[:batch_size]
            )
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


# --- stock level ---------------------------------------------------------------------


def keys_available_at_least(*, product_id: int, n: int) -> bool:
    """Whether ``n`` keys are available: reads at most n index entries, so it
    costs the same at a thousand keys in stock as at a million."""
    if n <= 0:
        return True
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE product_id = %s AND status = %s ORDER BY id + 0 OFFSET %s LIMIT 1",
            [product_id, CardKeyStatus.AVAILABLE, n - 1],
        )
        return cursor.fetchone() is not None


def low_stock_crossed(*, product_id: int) -> KeyPolicy | None:
    """If stock just fell to the product's threshold and no alert went out for
    this crossing, mark it alerted and return the policy (else None)."""
    policy = KeyPolicy.objects.filter(
        product_id=product_id, low_stock_threshold__gt=0, low_stock_alerted_at__isnull=True
    ).first()
    if policy is None or keys_available_at_least(product_id=product_id, n=policy.low_stock_threshold + 1):
        return None
    now = timezone.now()
    marked = KeyPolicy.objects.filter(pk=policy.pk, low_stock_alerted_at__isnull=True).update(low_stock_alerted_at=now)
    if not marked:
        return None
    policy.low_stock_alerted_at = now
    return policy


def low_stock_rearm(*, product_id: int) -> bool:
    """After a restock above the threshold, let the next crossing alert again."""
    policy = KeyPolicy.objects.filter(product_id=product_id, low_stock_alerted_at__isnull=False).first()
    if policy is None or not keys_available_at_least(product_id=product_id, n=policy.low_stock_threshold + 1):
        return False
    return bool(KeyPolicy.objects.filter(pk=policy.pk).update(low_stock_alerted_at=None))
