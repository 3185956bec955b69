"""After hand-over: sending, dead letters, resends, and the sweeper."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus, WebhookEvent
from riskctl.models import RiskEventKind
from riskctl.services import (
    risk_event_for_order,
)
from shop.models import (
    Order,
    OrderEventType,
    OrderStatus,
)
from shop.services.fulfilment import order_fill_from_stock
from shop.services.orders import (
    _order_transition,
    order_event_record,
    orders_expire_due,
)
from shop.webhook_events import order_webhook_emit

logger = logging.getLogger(__name__)


def order_delivery_send(*, delivery_id: int) -> str:
    """Send one delivery; when every channel has landed, the order is DELIVERED.

    The send happens outside any transaction (delivery_send). Recording the
    outcome locks the order briefly, so two channels finishing together settle
    the order exactly once.
    """
    try:
        delivery = delivery_services.delivery_send(delivery_id=delivery_id)
    except delivery_services.DeliveryRejected as rejected:
        order_delivery_dead_letter(delivery_id=delivery_id, reason=rejected.reason)
        return DeliveryStatus.FAILED
    if delivery.status != DeliveryStatus.SENT:
        return delivery.status
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=delivery.order_id)
        already = order.events.filter(
            type=OrderEventType.DELIVERY_SENT, data__channel=delivery.channel
        ).exists()
        if not already:
            order_event_record(order=order, type=OrderEventType.DELIVERY_SENT, data={"channel": delivery.channel})
        _order_settle(order=order)
    return delivery.status


def _order_settle(*, order: Order) -> bool:
    """FULFILLING → DELIVERED once every channel has landed. Call inside a
    transaction holding the order's lock."""
    if order.status != OrderStatus.FULFILLING or not delivery_services.deliveries_all_sent(order_id=order.pk):
        return False
    _order_transition(
        order=order, source=[OrderStatus.FULFILLING], target=OrderStatus.DELIVERED, delivered_at=timezone.now(),
    )
    order_event_record(order=order, type=OrderEventType.DELIVERED)
    order_webhook_emit(order=order, event=WebhookEvent.ORDER_DELIVERED)
    risk_event_for_order(kind=RiskEventKind.DELIVERED, order_id=order.pk, amount=order.amount)
    return True


def orders_settle_delivered() -> int:
    """Settle FULFILLING orders whose every delivery is already SENT: a worker
    died between recording the last send and settling the order, and no job
    is left to do it. Returns how many were settled."""
    settled = 0
    unsettled = (
        Order.objects.filter(status=OrderStatus.FULFILLING)
        .exclude(deliveries__status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED])
        .values_list("pk", flat=True)[:500]
    )
    for order_id in list(unsettled):
        with transaction.atomic():
            order = Order.objects.select_for_update(skip_locked=True).filter(pk=order_id).first()
            if order is not None and _order_settle(order=order):
                settled += 1
    return settled


def order_delivery_failed(*, delivery_id: int) -> bool:
    """After a failed attempt: once the retries are used up, dead-letter the delivery."""
    if not delivery_services.delivery_attempts_exhausted(delivery_id=delivery_id):
        return False
    return order_delivery_dead_letter(delivery_id=delivery_id)


def order_delivery_dead_letter(*, delivery_id: int, reason: str = "") -> bool:
    """PENDING → FAILED (retries used up, or rejected for good with ``reason``):
    the owner is alerted, the buyer's timeline shows it. False if it was not PENDING."""
    with transaction.atomic():
        if not delivery_services.delivery_mark_failed(delivery_id=delivery_id, reason=reason):
            return False
        delivery = Delivery.objects.get(pk=delivery_id)
        order = Order.objects.get(pk=delivery.order_id)
        data = {"channel": delivery.channel, "attempts": delivery.attempts}
        if reason:
            data["reason"] = reason[:200]
        order_event_record(order=order, type=OrderEventType.DELIVERY_FAILED, data=data)
    logger.error("delivery %s dead-lettered after %d attempts", delivery_id, delivery.attempts)
    return True


class ResendNotAllowed(Exception):
    code = "RESEND_NOT_ALLOWED"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def order_resend(*, order_id: int, actor: str, channels: list[str] | None = None, enqueue: bool = True) -> list[int]:
    """Send the order's SAME keys again to its own channels (all but the inbox,
    or only ``channels``). Returns the ids of the deliveries that will be sent
    (by the worker after commit, or by the caller when ``enqueue`` is False).
    Only for orders whose keys were handed over."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status not in Order.KEYS_VISIBLE:
            raise ResendNotAllowed("There is nothing to resend before the keys are delivered.")
        deliveries = order.deliveries.exclude(channel=Channel.INBOX).order_by("id")
        if channels:
            deliveries = deliveries.filter(channel__in=channels)
        resent = [d.pk for d in deliveries if delivery_services.delivery_resend(delivery_id=d.pk, enqueue=enqueue)]
        if resent:
            sent_to = Delivery.objects.filter(pk__in=resent).order_by("id").values_list("channel", flat=True)
            order_event_record(
                order=order, type=OrderEventType.RESEND_REQUESTED, actor=actor, data={"channels": list(sent_to)}
            )
            risk_event_for_order(kind=RiskEventKind.RESEND, order_id=order.pk)
    return resent


_STUCK_STATUSES = (OrderStatus.PAID, OrderStatus.FULFILLING, OrderStatus.AWAITING_STOCK)


STUCK_LISTED = 20


def orders_stuck_alert() -> int:
    """Alert the owner (once per alert window) about paid orders not delivered
    after SWEEP_STUCK_MINUTES. Returns how many are stuck."""
    cutoff = timezone.now() - timedelta(minutes=settings.SWEEP_STUCK_MINUTES)
    stuck = list(
        Order.objects.filter(status__in=_STUCK_STATUSES, paid_at__lt=cutoff)
        .order_by("paid_at", "id").values_list("order_no", "status")
    )
    if stuck:
        by_status = {status: sum(1 for _, s in stuck if s == status) for status in _STUCK_STATUSES}
        counts = ", ".join(f"{n} {status}" for status, n in by_status.items() if n)
        owner_alert_raise(
            kind=AlertKind.SWEEPER, dedupe_key="sweeper:stuck-orders",
            subject=f"{len(stuck)} paid order(s) not delivered after {settings.SWEEP_STUCK_MINUTES} minutes",
            body=f"{counts}.\nOldest: {', '.join(no for no, _ in stuck[:STUCK_LISTED])}",
        )
    return len(stuck)


SWEEP_LOCK = "kamidrop:sweep"


@dataclass(frozen=True)
class SweepReport:
    ran: bool
    requeued: int = 0
    expired: int = 0
    filled: int = 0
    settled: int = 0
    stuck: int = 0


def sweep_run() -> SweepReport:
    """One pass of the self-healing sweeper; reads the DB, not Redis.

    Re-enqueues lost deliveries, expires unpaid orders, fills orders waiting
    for stock, alerts on stuck orders, and records the run. Each step is
    idempotent and works in its own short transactions; a PostgreSQL advisory
    lock makes a second sweeper that starts meanwhile return at once.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [SWEEP_LOCK])
        (locked,) = cursor.fetchone()
    if not locked:
        return SweepReport(ran=False)
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
            ran=True, requeued=len(requeued), expired=orders_expire_due(),
            filled=order_fill_from_stock(), settled=orders_settle_delivered(), stuck=orders_stuck_alert(),
        )
        delivery_services.sweep_run_record(
            name="sweep", started_at=started_at,
            result={
                "requeued": report.requeued, "expired": report.expired, "filled": report.filled,
                "settled": report.settled, "stuck": report.stuck,
            },
        )
        return report
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [SWEEP_LOCK])
