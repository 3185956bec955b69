"""Settling orders after delivery: the timeline of what landed or failed, FULFILLING → DELIVERED, stuck orders."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, Delivery, DeliveryStatus
from shop.models import Order, OrderEvent, OrderEventType, OrderStatus
from shop.project.locks import orders_lock
from shop.services.events import event_delivery_failed, event_delivery_sent, events_save
from shop.services.lifecycle import orders_mark_delivered


def deliveries_recorded(*, orders: list[Order], sent: list[Delivery], dead_lettered: list) -> list[Order]:
    """``DELIVERY_RECORDED_HOOK``: delivery recorded deliveries as SENT
    (``sent``) or dead-lettered them (``dead_lettered``: ``DeadLetter``s).
    Writes the buyer's timeline and settles the orders whose every channel
    has landed. Call inside delivery's recording transaction, holding the
    locks of ``orders`` (the orders of ``sent``). Returns the settled orders."""
    events_save(*(
        event_delivery_failed(dead.delivery.order_id, channel=dead.delivery.channel,
                              attempts=dead.delivery.attempts, reason=dead.reason)
        for dead in dead_lettered
    ))
    return _orders_record_sent(orders=orders, deliveries=sent)


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
    events_save(*(event_delivery_sent(order_id, channel=channel) for order_id, channel in sorted(landed - recorded)))
    landed_orders = {order_id for order_id, _ in landed}
    return _orders_settle(orders=[o for o in orders if o.pk in landed_orders])


def _orders_settle(*, orders: list[Order]) -> list[Order]:
    """FULFILLING → DELIVERED for the orders whose every channel has landed
    (``orders_mark_delivered``: the transition, its event, the webhook and the
    risk event of each). Call inside a transaction holding the orders' locks.
    Returns the settled orders."""
    fulfilling = {order.pk: order for order in orders if order.status == OrderStatus.FULFILLING}
    if not fulfilling:
        return []
    waiting = set(
        Delivery.objects.filter(order_id__in=list(fulfilling)).exclude(status=DeliveryStatus.SENT)
        .values_list("order_id", flat=True)
    )
    settled = [order for pk, order in sorted(fulfilling.items()) if pk not in waiting]
    orders_mark_delivered(orders=settled)
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
            settled += len(_orders_settle(orders=orders_lock(ids=[order_id], skip_locked=True)))
    return settled


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
