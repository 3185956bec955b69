"""Exports: recorded first, then streamed at once (a small set) or written by
short RQ jobs a slice at a time (a large one), downloaded once, then deleted.

Every export writes its ``Export`` row before a single row is read (the
audit). An export of key plaintext also writes a ``KeyAuditEvent`` (EXPORTED)
for each key, before that key's chunk leaves the server (streamed) or in the
same transaction as the chunk is stored (a job). Only the masked form of a
key is exported without the plaintext permission; orders never carry keys.

A large export is written by a chain of jobs, each one slice of
``EXPORT_SLICE_ROWS`` rows after the last id written: a job stays well
inside the worker's minute, and deliveries waiting on the worker go between
two slices. A slice commits its file parts, the per-key audit and the move
of the export's position together, conditionally on the position it read,
so a duplicate or resumed job changes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone, translation
from redis.exceptions import RedisError

from exports.formats import WRITERS, XLSX_MAX_ROWS, ExportTooLarge
from exports.models import Export, ExportFormat, ExportKind, ExportPart, ExportStatus
from exports.selectors import export_columns, export_count, export_rows
from inventory.models import KeyAuditEvent
from inventory.services import keys_audit

logger = logging.getLogger(__name__)

QUEUE = "default"
# Rows read and encoded together: what one fetch of the server-side cursor holds.
CHUNK_ROWS = 1000
PART_BYTES = 1 << 20
LIVE = (ExportStatus.QUEUED, ExportStatus.RUNNING)


def export_start(*, user, ip: str | None, kind: str, format: str, filters: dict, plaintext: bool) -> Export:
    """Record an export and decide how it is made: ``STREAMED`` when the
    filter matches at most ``EXPORT_STREAM_MAX_ROWS`` rows (the caller streams
    ``export_stream``), else ``QUEUED`` with its first job enqueued on commit.
    The caller has checked the user may export this, with plaintext or not.
    Raises ExportTooLarge for an XLSX of more rows than a sheet holds."""
    total = export_count(kind=kind, filters=filters)
    if format == ExportFormat.XLSX and total > XLSX_MAX_ROWS:
        raise ExportTooLarge(f"{total} rows: more than a spreadsheet holds")
    stream = total <= settings.EXPORT_STREAM_MAX_ROWS
    with transaction.atomic():
        export = Export.objects.create(
            user=user, actor=f"staff:{user.get_username()}", ip=ip, kind=kind, format=format, filters=filters,
            plaintext=plaintext and kind == ExportKind.KEYS, language=translation.get_language() or "",
            status=ExportStatus.STREAMED if stream else ExportStatus.QUEUED, total=total,
        )
        if not stream:
            transaction.on_commit(lambda: export_enqueue(export_id=export.pk, position=0))
    return export


def export_enqueue(*, export_id: int, position: int) -> None:
    # The job id names the slice: enqueueing a slice twice runs it twice, and
    # the second run finds the position moved and does nothing.
    django_rq.get_queue(QUEUE).enqueue("exports.jobs.export_slice_job", export_id,
                                       job_id=f"export-{export_id}-{position}")


def _writer(export: Export):
    with translation.override(export.language or settings.LANGUAGE_CODE):
        columns = export_columns(kind=export.kind, filters=export.filters, plaintext=export.plaintext)
    return WRITERS[export.format](columns, state=dict(export.writer_state) or None)


def _chunks(export: Export, *, after: int, limit: int | None) -> Iterator[tuple[list[int], list[list]]]:
    ids, rows = [], []
    for pk, row in export_rows(kind=export.kind, filters=export.filters, plaintext=export.plaintext, after=after,
                               limit=limit, chunk_size=CHUNK_ROWS):
        ids.append(pk)
        rows.append(row)
        if len(rows) == CHUNK_ROWS:
            yield ids, rows
            ids, rows = [], []
    if rows:
        yield ids, rows


def _audit(export: Export, key_ids: list[int]) -> None:
    if export.plaintext:
        keys_audit(key_ids=key_ids, action=KeyAuditEvent.Action.EXPORTED, actor=export.actor, ip=export.ip,
                   detail=f"export #{export.pk}")


def export_stream(*, export: Export) -> Iterator[bytes]:
    """The file of a ``STREAMED`` export, chunk by chunk as the rows are read
    (a generator for a streaming response). The rows written are recorded
    when it ends, also when the browser went away before the end."""
    writer = _writer(export)
    written = 0
    try:
        yield writer.begin()
        for ids, rows in _chunks(export, after=0, limit=None):
            _audit(export, ids)  # committed (autocommit) before the keys go out
            written += len(rows)
            yield writer.rows(rows)
        yield writer.end()
    finally:
        now = timezone.now()
        Export.objects.filter(pk=export.pk).update(rows=written, updated_at=now, finished_at=now)


def export_slice(*, export_id: int) -> bool:
    """Write the next slice of a queued or running export; on the last one
    the file is complete and READY for its user, until ``EXPORT_FILE_MINUTES``
    pass. Returns whether another slice was enqueued."""
    export = Export.objects.filter(pk=export_id, status__in=LIVE).first()
    if export is None:
        return False
    limit = settings.EXPORT_SLICE_ROWS
    writer = _writer(export)
    # Ids start at 1: position 0 is the first slice, which writes the header.
    pieces = [writer.begin()] if export.position == 0 else []
    written, last, key_ids = 0, export.position, []
    for ids, rows in _chunks(export, after=export.position, limit=limit):
        pieces.append(writer.rows(rows))
        written += len(rows)
        last = ids[-1]
        key_ids.extend(ids)
    finished = written < limit
    if finished:
        pieces.append(writer.end())
    data = b"".join(pieces)
    now = timezone.now()
    with transaction.atomic():
        moved = Export.objects.filter(pk=export_id, status__in=LIVE, position=export.position).update(
            position=last, rows=F("rows") + written, size=F("size") + len(data), writer_state=writer.state,
            status=ExportStatus.READY if finished else ExportStatus.RUNNING, updated_at=now,
            finished_at=now if finished else None,
            expires_at=now + timedelta(minutes=settings.EXPORT_FILE_MINUTES) if finished else None,
        )
        if not moved:
            return False  # another run of this slice got there first
        seq = (ExportPart.objects.filter(export_id=export_id).aggregate(n=Max("seq"))["n"] or 0) + 1
        ExportPart.objects.bulk_create([
            ExportPart(export_id=export_id, seq=seq + i, data=data[start:start + PART_BYTES])
            for i, start in enumerate(range(0, len(data), PART_BYTES))
        ])
        _audit(export, key_ids)
        if not finished:
            transaction.on_commit(lambda: export_enqueue(export_id=export_id, position=last))
    return not finished


def export_fail(*, export_id: int, error: str) -> None:
    now = timezone.now()
    Export.objects.filter(pk=export_id, status__in=LIVE).update(
        status=ExportStatus.FAILED, error=error[:300], updated_at=now, finished_at=now)
    ExportPart.objects.filter(export_id=export_id).delete()


def export_download_claim(*, export_id: int, user) -> Export | None:
    """Take a READY export's file for its own user, once: the export is
    DOWNLOADED from here on. None: not this user's, not ready, already taken
    or expired."""
    now = timezone.now()
    claimed = Export.objects.filter(pk=export_id, user=user, status=ExportStatus.READY, expires_at__gt=now).update(
        status=ExportStatus.DOWNLOADED, downloaded_at=now, updated_at=now)
    return Export.objects.get(pk=export_id) if claimed else None


def export_file_read(*, export_id: int) -> Iterator[bytes]:
    """A claimed export's file, part by part; the parts are deleted once read
    (or, should the reader stop early, by the next sweep)."""
    try:
        # One part a query: a file's parts together may be far larger than
        # memory should hold (and behind PgBouncer there is no server-side cursor).
        parts = ExportPart.objects.filter(export_id=export_id)
        for part_id in parts.order_by("seq").values_list("pk", flat=True):
            yield bytes(parts.filter(pk=part_id).values_list("data", flat=True).get())
    finally:
        ExportPart.objects.filter(export_id=export_id).delete()


def exports_tidy(*, stalled_after_seconds: int = 120) -> dict:
    """The sweep's part: files past their hour expire, files downloaded or
    failed are deleted, and a job chain that stopped (a worker killed mid-slice,
    Redis lost its queue) is enqueued again where it stood."""
    now = timezone.now()
    expired = Export.objects.filter(status=ExportStatus.READY, expires_at__lte=now).update(
        status=ExportStatus.EXPIRED, updated_at=now)
    # A download in progress keeps its parts: they go an hour after it began.
    done = Export.objects.filter(status__in=[ExportStatus.EXPIRED, ExportStatus.FAILED]) | Export.objects.filter(
        status=ExportStatus.DOWNLOADED, downloaded_at__lt=now - timedelta(minutes=settings.EXPORT_FILE_MINUTES))
    deleted, _ = ExportPart.objects.filter(export__in=done.values("pk")).delete()
    stalled = list(Export.objects.filter(status__in=LIVE, updated_at__lt=now - timedelta(seconds=stalled_after_seconds))
                   .values_list("pk", "position"))
    resumed = 0
    for export_id, position in stalled:
        try:
            export_enqueue(export_id=export_id, position=position)
        except RedisError:
            # Redis is down: the next sweep tries again; the files above were tidied anyway.
            logger.warning("export #%s: could not be resumed, Redis unreachable", export_id)
            break
        resumed += 1
    return {"expired": expired, "parts_deleted": deleted, "resumed": resumed}
