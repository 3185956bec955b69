"""The sweep: one self-healing pass, run by the scheduled job (``delivery.jobs.sweep_job``) and ``manage.py sweep``.

One sweeper acts at a time, wherever they run: the one holding the ``sweep``
lease (``delivery.services.leases``), a row in PostgreSQL rather than a
session-level advisory lock, so leadership survives PgBouncer's transaction
pooling. The leader renews the lease before each step and stops at the first
renewal that fails; a leader that dies stops leading when its lease expires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from django.conf import settings
from django.utils import timezone

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from delivery.services import lease_hold, lease_holder_new, lease_release
from exports.services import exports_tidy
from payments.services import payment_notices_apply_overdue
from shop.services.fulfilment import order_fill_from_stock
from shop.services.lifecycle import orders_expire_due
from shop.services.manual import manual_orders_overdue_alert
from shop.services.settlement import orders_settle_delivered, orders_stuck_alert

logger = logging.getLogger(__name__)

SWEEP_LEASE = "sweep"


@dataclass(frozen=True)
class SweepReport:
    ran: bool
    applied: int = 0
    requeued: int = 0
    expired: int = 0
    filled: int = 0
    settled: int = 0
    stuck: int = 0
    overdue: int = 0  # manual orders past their due time in the staff's queue
    exports: dict | None = None  # export files expired and deleted, export jobs resumed
    # The lease was taken from this sweeper during the pass: the steps after it were not run.
    lost_lease: bool = False
    # The steps that raised, each "step: Error: message"; the steps after them ran all the same.
    failed: tuple[str, ...] = ()


def _requeue_orphans() -> int:
    requeued = delivery_services.deliveries_requeue_orphans(older_than_seconds=settings.SWEEP_ORPHAN_AFTER_SECONDS)
    if requeued:
        owner_alert_raise(
            kind=AlertKind.SWEEPER, dedupe_key="sweeper:requeued",
            subject=f"The sweeper re-enqueued {len(requeued)} delivery job(s) that were lost",
            body="A worker died mid-job or Redis lost data. The deliveries are being sent now.",
        )
    return len(requeued)


# The leader's steps, in order; each is idempotent and works in its own short transactions.
_STEPS = (
    ("requeued", _requeue_orphans),
    ("expired", orders_expire_due),
    ("filled", order_fill_from_stock),
    ("settled", orders_settle_delivered),
    ("stuck", orders_stuck_alert),
    ("overdue", manual_orders_overdue_alert),
    ("exports", exports_tidy),
)


def sweep_run(*, holder: str | None = None, lease_seconds: float | None = None) -> SweepReport:
    """One pass of the self-healing sweeper; reads the DB, not Redis.

    Applies payment notices whose wake-up was lost (also while another sweep
    leads: the applier takes each notice once). Then, if this sweeper holds
    the sweep lease or can take it: re-enqueues lost deliveries, expires
    unpaid orders, fills orders waiting for stock, settles orders whose
    deliveries all went out, alerts on stuck orders and on overdue manual
    orders (once each), deletes export files
    past their hour and resumes stopped export jobs, and records the run,
    renewing the lease before each step. A sweeper that cannot take it, or
    loses it midway, returns (``ran`` False, or ``lost_lease``).

    With no ``holder`` the pass is a one-off (``manage.py sweep``, the
    worker's periodic job): it leads under a holder id of its own and gives
    the lease back at the end. A loop passes its own ``holder`` and keeps the
    lease between passes (``sweep_release`` when it stops).
    """
    applied = payment_notices_apply_overdue(older_than_seconds=settings.PAYMENTS_APPLY_OVERDUE_SECONDS)
    one_off = holder is None
    holder = holder or lease_holder_new()
    seconds = lease_seconds or settings.SWEEP_LEASE_SECONDS
    if not lease_hold(name=SWEEP_LEASE, holder=holder, seconds=seconds):
        return SweepReport(ran=False, applied=applied)
    try:
        started_at = timezone.now()
        report = SweepReport(ran=True, applied=applied)
        for index, (field, step) in enumerate(_STEPS):
            if index and not lease_hold(name=SWEEP_LEASE, holder=holder, seconds=seconds):
                return replace(report, lost_lease=True)
            try:
                report = replace(report, **{field: step()})
            except Exception as exc:  # noqa: BLE001 - the steps are independent: one failing must not stop the rest
                logger.exception("sweep step %s failed", field)
                report = replace(report, failed=(*report.failed, f"{field}: {type(exc).__name__}: {exc}"[:300]))
        if not lease_hold(name=SWEEP_LEASE, holder=holder, seconds=seconds):
            return replace(report, lost_lease=True)
        delivery_services.sweep_run_record(
            name="sweep", started_at=started_at,
            result={
                "requeued": report.requeued, "expired": report.expired, "filled": report.filled,
                "settled": report.settled, "stuck": report.stuck, "overdue": report.overdue,
                "exports": report.exports, "failed": list(report.failed),
            },
        )
        if report.failed:
            owner_alert_raise(
                kind=AlertKind.SWEEPER, dedupe_key="sweeper:step-failed",
                subject=f"The sweeper could not do {len(report.failed)} of its steps",
                body="The other steps ran. It tries again on its next pass; if this repeats, look at the "
                     "sweeper's log.\n\n" + "\n".join(report.failed),
            )
        return report
    finally:
        if one_off:
            lease_release(name=SWEEP_LEASE, holder=holder)


def sweep_release(*, holder: str) -> bool:
    """A sweep loop that stops gives the lease back, so another sweeper leads
    at its next pass instead of after the lease expires."""
    return lease_release(name=SWEEP_LEASE, holder=holder)
