"""Importing keys into stock: checked, sealed, inserted in chunks, every line reported."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from inventory import sealing
from inventory.keyrules import LOOSE_RULES
from inventory.models import CardKey, CardKeyStatus, ImportBatch
from inventory.services.owner import keys_void
from inventory.services.stock import key_policy_get

IMPORT_CHUNK = 5000
# Line-level problems kept for the report; the counts stay exact beyond it.
REPORT_ISSUES_MAX = 1000



@dataclass(frozen=True)
class ImportIssue:
    line: int
    code: str  # DUPLICATE_IN_FILE, DUPLICATE_IN_STOCK, DUPLICATE_SOLD, DUPLICATE_VOID, INVALID
    detail: str


# A duplicate of a key already there, by that key's status: the code and what the report says.
_DUPLICATE_OF = {
    CardKeyStatus.AVAILABLE: ("DUPLICATE_IN_STOCK", "already in stock"),
    CardKeyStatus.HELD: ("DUPLICATE_IN_STOCK", "already in stock"),
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
            ON CONFLICT (product_id, fingerprint) WHERE source_id IS NULL DO NOTHING
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
            "WHERE product_id = %s AND fingerprint = ANY(%s) AND source_id IS NULL",
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


def import_batch_drop_if_empty(*, batch_id: int) -> bool:
    """Forget a batch that added no key (a re-run of an import that found
    every key there already), so the list of imports shows only those that
    did something. Returns whether it was dropped."""
    dropped, _ = ImportBatch.objects.filter(pk=batch_id, added=0).exclude(keys__isnull=False).delete()
    return bool(dropped)


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

