"""The order's state machine: events, transitions, paid, expired, refunded."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from delivery.models import WebhookEvent
from delivery.webhooks import webhook_wanted
from inventory import services as inventory_services
from riskctl.models import RiskEventKind
from riskctl.services import (
    review_close,
    risk_event_for_order,
)
from shop.models import (
    Order,
    OrderEvent,
    OrderEventType,
    OrderStatus,
)
from shop.webhook_events import order_webhook_emit

logger = logging.getLogger(__name__)


SYSTEM = "system"


class OrderTransitionError(Exception):
    """The order is not in a state that allows this step."""

    def __init__(self, *, order, wanted: str):
        super().__init__(f"order {order.order_no} is {order.status}, cannot become {wanted}")
        self.code = "ORDER_STATE_CONFLICT"


def order_event_record(*, order, type: str, actor: str = SYSTEM, data: dict | None = None) -> OrderEvent:
    return OrderEvent.objects.create(order=order, type=type, actor=actor, data=data or {})


def _order_transition(*, order: Order, source: list[str], target: str, **fields) -> None:
    _orders_transition(orders=[order], source=source, target=target, **fields)


def _orders_transition(*, orders: list[Order], source: list[str], target: str, **fields) -> None:
    """Move every one of ``orders`` from ``source`` to ``target`` in one
    conditional UPDATE; all or none (the caller's transaction rolls back)."""
    if not orders:
        return
    now = timezone.now()
    updated = Order.objects.filter(pk__in=[o.pk for o in orders], status__in=source).update(
        status=target, updated_at=now, **fields)
    if updated != len(orders):
        stray = next((o for o in orders if o.status not in source), orders[0])
        raise OrderTransitionError(order=stray, wanted=target)
    for order in orders:
        order.status = target
        for name, value in fields.items():
            setattr(order, name, value)


def order_mark_paid(*, order: Order, actor: str, data: dict | None = None) -> None:
    """PENDING_PAYMENT or EXPIRED → PAID. Call inside a transaction holding the order's lock.

    A payment for an expired order is accepted: money is never dropped.
    """
    orders_mark_paid(paid=[(order, data or {})], actor=actor)


def orders_mark_paid(*, paid: list[tuple[Order, dict]], actor: str) -> None:
    """``order_mark_paid`` for a batch of (order, event data), in three
    statements whatever its size. Call inside a transaction holding the
    orders' locks."""
    orders = [order for order, _ in paid]
    late = {order.pk: order.status == OrderStatus.EXPIRED for order in orders}
    now = timezone.now()
    _orders_transition(orders=orders, source=[OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED],
                       target=OrderStatus.PAID, paid_at=now, hold_expires_at=None)
    OrderEvent.objects.bulk_create(
        OrderEvent(order=order, type=OrderEventType.PAID, actor=actor, data={**data, "late": late[order.pk]})
        for order, data in paid
    )
    if webhook_wanted(event=WebhookEvent.ORDER_PAID):
        for order in orders:
            order_webhook_emit(order=order, event=WebhookEvent.ORDER_PAID)


def order_expire(*, order_id: int) -> bool:
    """PENDING_PAYMENT → EXPIRED once its stock hold has lapsed (the hold is
    count-based: from now on it no longer counts). A payment that still
    arrives is accepted (``order_mark_paid``). False if there was nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != OrderStatus.PENDING_PAYMENT or order.hold_expires_at is None or order.hold_expires_at > now:
            return False
        _order_transition(order=order, source=[OrderStatus.PENDING_PAYMENT], target=OrderStatus.EXPIRED)
        order_event_record(
            order=order, type=OrderEventType.EXPIRED, data={"hold_expired_at": order.hold_expires_at.isoformat()}
        )
    return True


def orders_expire_due() -> int:
    """Expire every unpaid order whose hold has lapsed, each in its own short transaction."""
    due = Order.objects.filter(status=OrderStatus.PENDING_PAYMENT, hold_expires_at__lt=timezone.now())
    return sum(order_expire(order_id=pk) for pk in due.order_by("id").values_list("pk", flat=True))


# An order may be refunded while its keys are not yet in the buyer's hands.
REFUNDABLE_STATUSES = (OrderStatus.PAID, OrderStatus.IN_REVIEW, OrderStatus.AWAITING_STOCK)


def order_refund_begin(*, order: Order, actor: str, reason: str) -> int:
    """PAID / IN_REVIEW / AWAITING_STOCK → REFUNDED: the order will deliver
    nothing, its reserved keys go back to stock. Call inside a transaction
    holding the payment's and then the order's lock; the money itself is
    given back by payments (``payment_refund``). Returns the keys released."""
    in_review = order.status == OrderStatus.IN_REVIEW
    _order_transition(order=order, source=list(REFUNDABLE_STATUSES), target=OrderStatus.REFUNDED)
    if in_review:  # refunded from the order page or by a dispute: nothing left to decide on the desk
        review_close(order_id=order.pk, note=f"closed by refund ({actor}): {reason}")
    order_event_record(order=order, type=OrderEventType.REFUND_REQUESTED, actor=actor, data={"reason": reason})
    released = sum(inventory_services.keys_release(line=line) for line in order.lines.order_by("id"))
    if released:
        order_event_record(order=order, type=OrderEventType.KEYS_RELEASED, actor=actor, data={"keys": released})
    return released


def order_refund_complete(*, order: Order, actor: str, data: dict) -> None:
    """The money went back (or the owner was told to send it by hand): the
    buyer's timeline says so. Call inside a transaction."""
    order_event_record(order=order, type=OrderEventType.REFUNDED, actor=actor, data=data)
    risk_event_for_order(kind=RiskEventKind.REFUNDED, order_id=order.pk, amount=order.amount)
    order_webhook_emit(order=order, event=WebhookEvent.ORDER_REFUNDED)
