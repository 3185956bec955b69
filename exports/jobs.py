"""RQ jobs of exports. Jobs take ids and are idempotent (a slice moves the
export's position conditionally: a duplicate run does nothing)."""

import logging

from exports.services import export_fail, export_slice

logger = logging.getLogger(__name__)


def export_slice_job(export_id: int) -> bool:
    """One slice of a large export; enqueues the next. A slice that fails
    fails the export (its user sees it and may start it again) and raises,
    so the job shows in RQ's failed registry for ops."""
    try:
        return export_slice(export_id=export_id)
    except Exception as exc:
        logger.exception("export #%s failed", export_id)
        export_fail(export_id=export_id, error=type(exc).__name__)
        raise
