"""RQ jobs of the delivery queue, and the periodic sweep. Jobs take ids and are idempotent.

Jobs are an interface: each calls one domain function (delivery's sending
services; the sweep routine of ``shop.ops.sweep``) and returns its result.
"""

import logging

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from delivery.services import deliveries_send, delivery_failed, delivery_send
from shop.ops.sweep import sweep_run

logger = logging.getLogger(__name__)


def deliveries_send_job(delivery_ids: list[int]) -> dict:
    """A batch of first sends. It does not raise for a failed delivery: that
    one is retried on its own job; a batch job is never retried whole."""
    return deliveries_send(delivery_ids=delivery_ids)


def delivery_send_job(delivery_id: int) -> str:
    return delivery_send(delivery_id=delivery_id)


def delivery_send_failed(job, connection, exc_type, exc_value, traceback) -> None:
    # rq calls this after every failed attempt; the service decides from the
    # delivery's own attempt counter whether this one was the last.
    delivery_failed(delivery_id=job.args[0])


def sweep_job() -> dict:
    """The periodic sweep (registered by ``delivery.worker``): the same pass as
    ``manage.py sweep``. It never raises: rq repeats a job only after a
    success, and one bad pass must not stop the sweeper for good. A failure
    is logged and alerted instead."""
    try:
        report = sweep_run()
    except Exception as exc:
        logger.exception("sweep failed")
        owner_alert_raise(
            kind=AlertKind.SWEEPER, dedupe_key="sweeper:error",
            subject=f"The sweeper failed: {type(exc).__name__}", body=str(exc)[:1000],
        )
        return {"ran": False, "error": type(exc).__name__}
    return {"ran": report.ran, "applied": report.applied, "requeued": report.requeued, "expired": report.expired,
            "filled": report.filled, "stuck": report.stuck, "lost_lease": report.lost_lease,
            "failed": list(report.failed)}
