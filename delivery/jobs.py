"""RQ jobs of the delivery queue, and the periodic sweep. Jobs take ids and are idempotent.

Jobs are an interface: they call the shop's order services, which own the
order's state machine and call the delivery services.
"""

import logging

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from shop.services import order_deliveries_send, order_delivery_failed, order_delivery_send, sweep_run

logger = logging.getLogger(__name__)


def deliveries_send_job(delivery_ids: list[int]) -> dict:
    """A batch of first sends. It does not raise for a failed delivery: that
    one is retried on its own job; a batch job is never retried whole."""
    return order_deliveries_send(delivery_ids=delivery_ids)


def delivery_send_job(delivery_id: int) -> str:
    return order_delivery_send(delivery_id=delivery_id)


def delivery_send_failed(job, connection, exc_type, exc_value, traceback) -> None:
    # rq calls this after every failed attempt; the service decides from the
    # delivery's own attempt counter whether this one was the last.
    order_delivery_failed(delivery_id=job.args[0])


def sweep_job() -> dict:
    """The periodic sweep (registered by ``delivery.worker``). It never raises:
    rq repeats a job only after a success, and one bad pass must not stop the
    sweeper for good. A failure is logged and alerted instead."""
    try:
        report = sweep_run()
    except Exception as exc:
        logger.exception("sweep failed")
        owner_alert_raise(
            kind=AlertKind.SWEEPER, dedupe_key="sweeper:error",
            subject=f"The sweeper failed: {type(exc).__name__}", body=str(exc)[:1000],
        )
        return {"ran": False, "error": type(exc).__name__}
    return {"ran": report.ran, "requeued": report.requeued, "expired": report.expired,
            "filled": report.filled, "stuck": report.stuck}
