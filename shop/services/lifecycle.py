"""The order's lifecycle: every status change goes through ``orders_move``,
which checks it against the state machine below and moves a whole set in one
conditional UPDATE. Paid, expired and refunded live here too.

    PENDING_PAYMENT → PAID → (IN_REVIEW →) FULFILLING → DELIVERED
    PENDING_PAYMENT → EXPIRED (→ PAID: a late payment is accepted)
    PAID / IN_REVIEW → AWAITING_STOCK → FULFILLING | IN_REVIEW (stock arrived)
    PAID / IN_REVIEW → PREPARING (a manual product: the staff's queue) → FULFILLING
    PAID / IN_REVIEW / AWAITING_STOCK / PREPARING → REFUNDED
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from delivery.models import WebhookEvent
from delivery.webhooks import webhook_wanted
from inventory import services as inventory_services
from riskctl.models import RiskEventKind
from riskctl.services import review_close, risk_event_for_order, risk_events_for_orders
from shop.models import Order, OrderStatus
from shop.project.locks import order_lock
from shop.services.events import (
    event_delivered,
    event_expired,
    event_keys_released,
    event_paid,
    event_refund_requested,
    event_refunded,
    events_save,
)
from shop.webhook_events import order_webhook_emit

logger = logging.getLogger(__name__)

S = OrderStatus

# An order may be refunded while its keys are not yet in the buyer's hands.
REFUNDABLE_STATUSES = (S.PAID, S.IN_REVIEW, S.AWAITING_STOCK, S.PREPARING)

# target → the statuses it may be reached from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.PAID: (S.PENDING_PAYMENT, S.EXPIRED),
    S.EXPIRED: (S.PENDING_PAYMENT,),
    S.IN_REVIEW: (S.PAID, S.AWAITING_STOCK),
    S.AWAITING_STOCK: (S.PAID, S.IN_REVIEW),
    S.PREPARING: (S.PAID, S.IN_REVIEW),
    S.FULFILLING: (S.PAID, S.IN_REVIEW, S.AWAITING_STOCK, S.PREPARING),
    S.DELIVERED: (S.FULFILLING,),
    S.REFUNDED: REFUNDABLE_STATUSES,
}


class OrderTransitionError(Exception):
    """The order is not in a state that allows this step."""

    def __init__(self, *, order, wanted: str):
        super().__init__(f"order {order.order_no} is {order.status}, cannot become {wanted}")
        self.code = "ORDER_STATE_CONFLICT"


def orders_move(*, orders: list[Order], target: str, source: tuple[str, ...] | list[str] | None = None,
                **fields) -> None:
    """Move every one of ``orders`` to ``target`` (from ``source``, which must
    be allowed by the state machine; by default, any status that may reach
    it) in one conditional UPDATE, setting ``fields`` too; all or none (the
    caller's transaction rolls back). Call inside a transaction holding the
    orders' locks."""
    allowed = TRANSITIONS[target]
    source = allowed if source is None else tuple(source)
    if not set(source) <= set(allowed):
        raise ValueError(f"{sorted(set(source) - set(allowed))} → {target} is not a transition of the order")
    if not orders:
        return
    now = timezone.now()
    updated = Order.objects.filter(pk__in=[o.pk for o in orders], status__in=source).update(
        status=target, updated_at=now, **fields)
    if updated != len(orders):
        stray = next((o for o in orders if o.status not in source), orders[0])
        raise OrderTransitionError(order=stray, wanted=target)
    for order in orders:
        order.status, order.updated_at = target, now
        for name, value in fields.items():
            setattr(order, name, value)


def order_mark_paid(*, order: Order, actor: str, data: dict | None = None) -> None:
    """``orders_mark_paid`` for one order."""
    orders_mark_paid(paid=[(order, data or {})], actor=actor)


def orders_mark_paid(*, paid: list[tuple[Order, dict]], actor: str) -> None:
    """PENDING_PAYMENT or EXPIRED → PAID for a batch of (order, {external_id,
    amount}), in three statements whatever its size. Call inside a
    transaction holding the orders' locks.

    A payment for an expired order is accepted: money is never dropped.
    """
    orders = [order for order, _ in paid]
    late = {order.pk: order.status == S.EXPIRED for order in orders}
    orders_move(orders=orders, target=S.PAID, paid_at=timezone.now(), hold_expires_at=None)
    events_save(*(event_paid(order, actor=actor, facts=data, late=late[order.pk]) for order, data in paid))
    if webhook_wanted(event=WebhookEvent.ORDER_PAID):
        for order in orders:
            order_webhook_emit(order=order, event=WebhookEvent.ORDER_PAID)


def orders_mark_delivered(*, orders: list[Order]) -> None:
    """FULFILLING → DELIVERED (every channel has landed): the transition, its
    event, the webhook and the risk event of each, in a constant number of
    statements. Call inside a transaction holding the orders' locks."""
    if not orders:
        return
    orders_move(orders=orders, target=S.DELIVERED, delivered_at=timezone.now())
    events_save(*(event_delivered(order) for order in orders))
    if webhook_wanted(event=WebhookEvent.ORDER_DELIVERED):
        for order in orders:
            order_webhook_emit(order=order, event=WebhookEvent.ORDER_DELIVERED)
    risk_events_for_orders(kind=RiskEventKind.DELIVERED, orders=[(order.pk, order.amount) for order in orders])


def order_expire(*, order_id: int) -> bool:
    """PENDING_PAYMENT → EXPIRED once its stock hold has lapsed: the keys it
    held go back to stock. A payment that still arrives is accepted
    (``orders_mark_paid``: it claims keys afresh). False if there was nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        order = order_lock(id=order_id)
        if order.status != S.PENDING_PAYMENT or order.hold_expires_at is None or order.hold_expires_at > now:
            return False
        orders_move(orders=[order], target=S.EXPIRED)
        inventory_services.keys_holds_release(line_ids=list(order.lines.values_list("pk", flat=True)))
        events_save(event_expired(order, hold_expired_at=order.hold_expires_at))
    return True


def orders_expire_due() -> int:
    """Expire every unpaid order whose hold has lapsed, each in its own short transaction."""
    due = Order.objects.filter(status=S.PENDING_PAYMENT, hold_expires_at__lt=timezone.now())
    return sum(order_expire(order_id=pk) for pk in due.order_by("id").values_list("pk", flat=True))


def order_refund_begin(*, order: Order, actor: str, reason: str) -> int:
    """PAID / IN_REVIEW / AWAITING_STOCK / PREPARING → REFUNDED: the order will deliver
    nothing, its reserved keys go back to stock. Call inside a transaction
    holding the payment's and then the order's lock; the money itself is
    given back by payments (``payment_refund``). Returns the keys released."""
    in_review = order.status == S.IN_REVIEW
    orders_move(orders=[order], target=S.REFUNDED)
    if in_review:  # refunded from the order page or by a dispute: nothing left to decide on the desk
        review_close(order_id=order.pk, note=f"closed by refund ({actor}): {reason}")
    events = [event_refund_requested(order, actor=actor, reason=reason)]
    released = sum(inventory_services.keys_release(line=line) for line in order.lines.order_by("id"))
    if released:
        events.append(event_keys_released(order, actor=actor, keys=released))
    events_save(*events)
    return released


def order_refund_complete(*, order: Order, actor: str, data: dict) -> None:
    """The money went back (or the owner was told to send it by hand): the
    buyer's timeline says so. Call inside a transaction."""
    events_save(event_refunded(order, actor=actor, data=data))
    risk_event_for_order(kind=RiskEventKind.REFUNDED, order_id=order.pk, amount=order.amount)
    order_webhook_emit(order=order, event=WebhookEvent.ORDER_REFUNDED)
