"""The sweep: one self-healing pass, run by the scheduled job (``delivery.jobs.sweep_job``) and ``manage.py sweep``."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from exports.services import exports_tidy
from payments.services import payment_notices_apply_overdue
from shop.services.fulfilment import order_fill_from_stock
from shop.services.lifecycle import orders_expire_due
from shop.services.settlement import orders_settle_delivered, orders_stuck_alert

SWEEP_LOCK = "kamidrop:sweep"


@dataclass(frozen=True)
class SweepReport:
    ran: bool
    applied: int = 0
    requeued: int = 0
    expired: int = 0
    filled: int = 0
    settled: int = 0
    stuck: int = 0


def sweep_run() -> SweepReport:
    """One pass of the self-healing sweeper; reads the DB, not Redis.

    Applies payment notices whose wake-up was lost (also while another sweep
    runs: the applier takes each notice once), then re-enqueues lost
    deliveries, expires unpaid orders, fills orders waiting for stock, settles
    orders whose deliveries all went out, alerts on stuck orders, deletes
    export files past their hour and resumes stopped export jobs, and records
    the run. Each step is idempotent and works in its own short transactions;
    a PostgreSQL advisory lock makes a second sweeper that starts meanwhile
    return at once.
    """
    applied = payment_notices_apply_overdue(older_than_seconds=settings.PAYMENTS_APPLY_OVERDUE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [SWEEP_LOCK])
        (locked,) = cursor.fetchone()
    if not locked:
        return SweepReport(ran=False, applied=applied)
    try:
        started_at = timezone.now()
        requeued = delivery_services.deliveries_requeue_orphans(
            older_than_seconds=settings.SWEEP_ORPHAN_AFTER_SECONDS
        )
        if requeued:
            owner_alert_raise(
                kind=AlertKind.SWEEPER, dedupe_key="sweeper:requeued",
                subject=f"The sweeper re-enqueued {len(requeued)} delivery job(s) that were lost",
                body="A worker died mid-job or Redis lost data. The deliveries are being sent now.",
            )
        report = SweepReport(
            ran=True, applied=applied, requeued=len(requeued), expired=orders_expire_due(),
            filled=order_fill_from_stock(), settled=orders_settle_delivered(), stuck=orders_stuck_alert(),
        )
        exports = exports_tidy()
        delivery_services.sweep_run_record(
            name="sweep", started_at=started_at,
            result={
                "requeued": report.requeued, "expired": report.expired, "filled": report.filled,
                "settled": report.settled, "stuck": report.stuck, "exports": exports,
            },
        )
        return report
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [SWEEP_LOCK])
