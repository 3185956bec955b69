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
from delivery.webhooks import webhook_wanted
from riskctl.models import RiskEventKind
from riskctl.services import (
    risk_event_for_order,
    risk_events_for_orders,
)
from shop.models import (
    Order,
    OrderEvent,
    OrderEventType,
    OrderStatus,
)
from shop.services.fulfilment import order_fill_from_stock
from shop.services.orders import (
    SYSTEM,
    OrderTransitionError,
    order_event_record,
    orders_expire_due,
)
from shop.webhook_events import order_webhook_emit

logger = logging.getLogger(__name__)


def order_deliveries_send(*, delivery_ids: list[int]) -> dict[str, int]:
    """Send a batch of deliveries (the batch job); settle the orders whose
    every channel has landed.

    The sends happen outside any transaction, over one connection per
    channel; the outcomes are recorded and the orders settled in one short
    transaction. A delivery rejected for good is dead-lettered at once; one
    that failed otherwise is retried on its own job on the rest of the retry
    schedule (or dead-lettered if that is used up). Returns counts by outcome.
    """
    recorded = _deliveries_send(delivery_ids=delivery_ids)
    for send in recorded.rejected:
        order_delivery_dead_letter(delivery_id=send.delivery.pk, reason=send.error)
    for send in recorded.retry:
        if not order_delivery_failed(delivery_id=send.delivery.pk):
            delivery_services.delivery_retry_enqueue(delivery_id=send.delivery.pk)
    return {"sent": len(recorded.sent), "retry": len(recorded.retry), "rejected": len(recorded.rejected)}


def order_delivery_send(*, delivery_id: int) -> str:
    """Send one delivery (its own job: a retry, a resend, ``redeliver``, the
    sweeper's rescue); when every channel has landed, the order is DELIVERED.

    A SENT or FAILED delivery, or one another run is sending, is left alone
    and its status returned. A transient failure is re-raised, so the queue
    retries on its schedule; a permanent one dead-letters the delivery.
    """
    recorded = _deliveries_send(delivery_ids=[delivery_id])
    if recorded.rejected:
        order_delivery_dead_letter(delivery_id=delivery_id, reason=recorded.rejected[0].error)
        return DeliveryStatus.FAILED
    if recorded.retry:
        raise recorded.retry[0].result
    if recorded.sent:
        return DeliveryStatus.SENT
    return Delivery.objects.values_list("status", flat=True).get(pk=delivery_id)


def _deliveries_send(*, delivery_ids: list[int]) -> delivery_services.SendsRecorded:
    """Claim, send, record and settle: what the batch and the single send share.

    Recording locks the orders of the sent deliveries (in id order, before
    their delivery rows: the lock order of the paid transaction), so two
    channels of one order finishing together settle it exactly once.
    """
    sends = delivery_services.deliveries_claim(delivery_ids=delivery_ids)
    if not sends:
        return delivery_services.SendsRecorded()
    seconds = delivery_services.deliveries_transmit(sends=sends)
    order_ids = sorted({send.delivery.order_id for send in sends if send.sent})
    with transaction.atomic():
        orders = list(Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk"))
        recorded = delivery_services.deliveries_record(sends=sends, seconds=seconds)
        _orders_record_sent(orders=orders, deliveries=recorded.sent)
    return recorded


def _orders_record_sent(*, orders: list[Order], deliveries: list[Delivery]) -> list[Order]:
    """The timeline event of each channel that just landed (once per order
    and channel, ever: a resend adds none), then settle. Call inside a
    transaction holding the orders' locks. Returns the settled orders."""
    if not deliveries:
        return []
    landed = {(d.order_id, d.channel) for d in deliveries}
    recorded = set(
        OrderEvent.objects.filter(order_id__in={order_id for order_id, _ in landed}, type=OrderEventType.DELIVERY_SENT)
        .values_list("order_id", "data__channel")
    )
    OrderEvent.objects.bulk_create(
        OrderEvent(order_id=order_id, type=OrderEventType.DELIVERY_SENT, actor=SYSTEM, data={"channel": channel})
        for order_id, channel in sorted(landed - recorded)
    )
    landed_orders = {order_id for order_id, _ in landed}
    return _orders_settle(orders=[o for o in orders if o.pk in landed_orders])


def _orders_settle(*, orders: list[Order]) -> list[Order]:
    """FULFILLING → DELIVERED for the orders whose every channel has landed:
    the transition, its event, the webhook and the risk event of each, the
    transition and events in a constant number of statements. Call inside a
    transaction holding the orders' locks. Returns the settled orders."""
    fulfilling = {order.pk: order for order in orders if order.status == OrderStatus.FULFILLING}
    if not fulfilling:
        return []
    waiting = set(
        Delivery.objects.filter(order_id__in=list(fulfilling)).exclude(status=DeliveryStatus.SENT)
        .values_list("order_id", flat=True)
    )
    settled = [order for pk, order in sorted(fulfilling.items()) if pk not in waiting]
    if not settled:
        return []
    now = timezone.now()
    updated = Order.objects.filter(pk__in=[o.pk for o in settled], status=OrderStatus.FULFILLING).update(
        status=OrderStatus.DELIVERED, delivered_at=now, updated_at=now
    )
    if updated != len(settled):
        raise OrderTransitionError(order=settled[0], wanted=OrderStatus.DELIVERED)
    for order in settled:
        order.status, order.delivered_at, order.updated_at = OrderStatus.DELIVERED, now, now
    OrderEvent.objects.bulk_create(
        OrderEvent(order=order, type=OrderEventType.DELIVERED, actor=SYSTEM) for order in settled
    )
    if webhook_wanted(event=WebhookEvent.ORDER_DELIVERED):
        for order in settled:
            order_webhook_emit(order=order, event=WebhookEvent.ORDER_DELIVERED)
    risk_events_for_orders(kind=RiskEventKind.DELIVERED, orders=[(order.pk, order.amount) for order in settled])
    return settled


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
            if order is not None:
                settled += len(_orders_settle(orders=[order]))
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


def order_resend(*, order_id: int, actor: str, channels: list[str] | None = None, enqueue: bool = True,
                 note: str = "") -> list[int]:
    """Send the order's SAME keys again to its own channels (all but the inbox,
    or only ``channels``). Returns the ids of the deliveries that will be sent
    (by the worker after commit, or by the caller when ``enqueue`` is False).
    Only for orders whose keys were handed over. ``note``: why (staff), kept
    on the timeline event."""
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
            data = {"channels": list(sent_to)}
            if note:
                data["note"] = note[:500]
            order_event_record(order=order, type=OrderEventType.RESEND_REQUESTED, actor=actor, data=data)
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
