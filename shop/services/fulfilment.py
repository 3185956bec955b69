"""Fulfilment: keys for a paid order, review holds, waiting orders, replacements."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from django.db import transaction

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, Channel
from inventory import services as inventory_services
from inventory.selectors import key_on_order
from riskctl.services import (
    PaidOrder,
    payment_assess,
    payments_assess,
    review_decide,
    review_open,
    review_pending,
)
from shop.models import (
    Order,
    OrderEvent,
    OrderEventType,
    OrderLine,
    OrderStatus,
    Product,
)
from shop.services.orders import (
    SYSTEM,
    OrderTransitionError,
    _order_transition,
    _orders_transition,
    order_event_record,
)
from shop.webhook_events import product_low_stock_webhook_emit

logger = logging.getLogger(__name__)


def order_fulfil(*, order: Order, outbox: list[int] | None = None, lines: list | None = None,
                 assessment=None, hold_reason: str = "") -> str:
    """Reserve the keys of a PAID (or AWAITING_STOCK) order and hand them over.
    Call inside a transaction holding the order's lock. Returns the new status.

    All lines get their keys or none do: short of stock → AWAITING_STOCK (no
    partial delivery; an order already waiting just keeps waiting). Otherwise
    the keys go to the buyer's inbox (the order page) in this transaction and
    one outbox Delivery per other channel is written, to be sent after commit:
    enqueued by this order's own after-commit hook, or, given an ``outbox``
    list, left to the caller (their ids are appended), who enqueues a whole
    batch of orders' deliveries at once. A caller that has the order's lines
    (with their products) and its payment-time ``assessment`` passes them.
    ``hold_reason``: hold the order for review whatever the assessment says
    (e.g. the provider reported a dispute before the payment).
    """
    source = order.status
    if lines is None:
        lines = list(order.lines.select_related("product"))
    review = _order_review_at_payment(order=order, lines=lines, assessment=assessment, hold_reason=hold_reason) \
        if source == OrderStatus.PAID else review_pending(order_id=order.pk)
    try:
        # One line's claim is all-or-nothing by itself; several lines need a
        # savepoint, so a short second line gives the first one's keys back.
        with transaction.atomic() if len(lines) > 1 else nullcontext():
            claimed = {line.pk: inventory_services.keys_reserve(line=line) for line in lines}
    except inventory_services.KeysUnavailable as short:
        if source == OrderStatus.AWAITING_STOCK:
            return order.status
        _order_transition(order=order, source=[OrderStatus.PAID], target=OrderStatus.AWAITING_STOCK)
        order_event_record(
            order=order, type=OrderEventType.AWAITING_STOCK, data={"wanted": short.wanted, "free": short.claimed}
        )
        logger.warning("order %s awaiting stock: wanted %d, free %d", order.order_no, short.wanted, short.claimed)
        return order.status
    if source == OrderStatus.AWAITING_STOCK:
        order_event_record(order=order, type=OrderEventType.STOCK_FILLED)
    order_event_record(
        order=order, type=OrderEventType.KEYS_RESERVED, data={"keys": sum(len(ids) for ids in claimed.values())}
    )
    if review is not None:
        # Held for a human: the keys are set aside but not revealed.
        _order_transition(order=order, source=[source], target=OrderStatus.IN_REVIEW)
        return order.status
    order_handover(order=order, lines=lines, source=source, outbox=outbox)
    return order.status


def _order_review_at_payment(*, order: Order, lines: list, assessment=None, hold_reason: str = "") -> object | None:
    """Assess a just-paid order (unless its ``assessment`` is given); on
    REVIEW (or with a ``hold_reason``) open the review item, tell the owner
    (one digest per window, not one mail per order) and return it."""
    if assessment is None:
        assessment = payment_assess(order_id=order.pk, lines=[(line.product_id, line.quantity) for line in lines],
                                    amount=order.amount)
    if assessment.decision != "REVIEW" and not hold_reason:
        return None
    review = review_open(order_id=order.pk, assessment=assessment)
    data = {"ref": assessment.ref, "score": assessment.score}
    if hold_reason:
        data["reason"] = hold_reason
    order_event_record(order=order, type=OrderEventType.REVIEW_OPENED, data=data)
    owner_alert_raise(
        kind=AlertKind.REVIEW, dedupe_key="review-queue",
        subject="Orders are waiting for review",
        body=f"Order {order.order_no} (score {assessment.score}) and possibly others wait in the review queue.",
    )
    return review


def order_handover(*, order: Order, lines: list, source: str, outbox: list[int] | None = None) -> None:
    """Reveal reserved keys: inbox now, other channels from the outbox. Call
    inside a transaction holding the order's lock. ``outbox``: as in ``order_fulfil``."""
    for line in lines:
        inventory_services.keys_mark_delivered(line=line)
    created = delivery_services.deliveries_create(order=order, channels=_order_channels(order=order, lines=lines),
                                                  enqueue=outbox is None)
    if outbox is not None:
        outbox.extend(delivery.pk for delivery in created if delivery.channel != Channel.INBOX)
    _order_transition(order=order, source=[source], target=OrderStatus.FULFILLING)
    order_event_record(order=order, type=OrderEventType.DELIVERY_SENT, data={"channel": Channel.INBOX})
    for product_id in {line.product_id for line in lines}:
        product_low_stock_check(product_id=product_id)


def _order_channels(*, order: Order, lines: list) -> list[tuple[str, str]]:
    """The order's (channel, recipient)s: the inbox always, email and SMS as
    its products say and the buyer gave. ``lines`` come with their products."""
    products = [line.product for line in lines]
    channels = [(Channel.INBOX, "")]
    if any(product.deliver_by_email for product in products):
        channels.append((Channel.EMAIL, order.email))
    if order.phone and any(product.deliver_by_sms for product in products):
        channels.append((Channel.SMS, order.phone))  # the buyer gave a phone number
    return channels


def orders_fulfil_paid(*, orders: list[Order], outbox: list[int]) -> None:
    """``order_fulfil`` for a batch of just-PAID orders, set-based: one
    assessment of the batch, one claim per product, one insert of the
    deliveries and of each kind of event, one UPDATE per new status. Call
    inside a transaction holding the orders' locks; the email and SMS
    deliveries' ids are appended to ``outbox``, for the caller to enqueue
    after commit.

    An order the assessment holds for review, or one with several lines
    (they get their keys together or not at all), goes through
    ``order_fulfil`` with the assessment made here.
    """
    lines_of: dict[int, list] = {}
    for line in OrderLine.objects.filter(order__in=orders).select_related("product").order_by("id"):
        lines_of.setdefault(line.order_id, []).append(line)
    assessments = payments_assess(orders=[
        PaidOrder(order_id=o.pk, lines=[(line.product_id, line.quantity) for line in lines_of[o.pk]], amount=o.amount)
        for o in orders
    ])
    by_product: dict[int, list[tuple[Order, object]]] = {}
    for order in orders:
        lines = lines_of[order.pk]
        if assessments[order.pk].decision == "REVIEW" or len(lines) != 1:
            order_fulfil(order=order, outbox=outbox, lines=lines, assessment=assessments[order.pk])
        else:
            by_product.setdefault(lines[0].product_id, []).append((order, lines[0]))
    served, waiting = [], []
    for product_id, pairs in by_product.items():
        claim = inventory_services.keys_deliver_many(product_id=product_id, lines=[
            inventory_services.LineClaim(line_id=line.pk, quantity=line.quantity, detail=f"order {order.order_no}")
            for order, line in pairs
        ])
        for order, line in pairs:
            if line.pk in claim.short:
                waiting.append((order, claim.short[line.pk]))
            else:
                served.append((order, line))
    _orders_transition(orders=[order for order, _ in waiting], source=[OrderStatus.PAID],
                       target=OrderStatus.AWAITING_STOCK)
    if waiting:  # one line per batch: a sell-out in a flash sale is thousands of them
        logger.warning("%d orders awaiting stock: %s", len(waiting), ", ".join(
            f"{order.order_no} (wanted {wanted}, free {free})" for order, (wanted, free) in waiting))
    created = delivery_services.deliveries_create_many(
        orders=[(order, _order_channels(order=order, lines=[line])) for order, line in served])
    outbox.extend(delivery.pk for delivery in created if delivery.channel != Channel.INBOX)
    _orders_transition(orders=[order for order, _ in served], source=[OrderStatus.PAID],
                       target=OrderStatus.FULFILLING)
    events = [OrderEvent(order=order, type=OrderEventType.AWAITING_STOCK, actor=SYSTEM,
                         data={"wanted": wanted, "free": free}) for order, (wanted, free) in waiting]
    for order, line in served:
        events.append(OrderEvent(order=order, type=OrderEventType.KEYS_RESERVED, actor=SYSTEM,
                                 data={"keys": line.quantity}))
        events.append(OrderEvent(order=order, type=OrderEventType.DELIVERY_SENT, actor=SYSTEM,
                                 data={"channel": Channel.INBOX}))
    OrderEvent.objects.bulk_create(events)
    for product_id in {line.product_id for _, line in served}:
        product_low_stock_check(product_id=product_id)


def order_review_approve(*, order_id: int, user=None, note: str = "") -> str:
    """A human approved a held order: deliver it (or, if it is still waiting
    for stock, let the fill deliver it). Returns the order's status."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        review_decide(order_id=order_id, outcome="APPROVED", user=user, note=note)
        actor = f"staff:{user.get_username()}" if user else SYSTEM
        order_event_record(order=order, type=OrderEventType.REVIEW_APPROVED, actor=actor, data={"note": note[:500]})
        if order.status == OrderStatus.IN_REVIEW:
            order_handover(order=order, lines=list(order.lines.select_related("product")), source=OrderStatus.IN_REVIEW)
    return order.status


def product_low_stock_check(*, product_id: int) -> bool:
    """Alert the owner once when a product's stock falls to its threshold."""
    policy = inventory_services.low_stock_crossed(product_id=product_id)
    if policy is None:
        return False
    product = Product.objects.get(pk=product_id)
    owner_alert_raise(
        kind=AlertKind.LOW_STOCK,
        dedupe_key=f"low-stock:{product_id}:{policy.low_stock_alerted_at.isoformat()}",
        subject=f"Low stock: {product.name} is down to {policy.low_stock_threshold} keys or fewer",
        body=f"Import more keys for {product.name} ({product.slug}).",
    )
    product_low_stock_webhook_emit(product_id=product_id, threshold=policy.low_stock_threshold)
    return True


def order_fill_from_stock(*, product_id: int | None = None) -> int:
    """Fill AWAITING_STOCK orders (of one product, or all), oldest paid first.

    Each order is filled in its own short transaction through the normal
    fulfilment path (keys, inbox, email outbox, events). Per product the queue
    is strict: when the oldest waiting order cannot be filled, younger ones of
    the same product wait behind it. Orders locked elsewhere are skipped and
    picked up by the next call. Returns the number of orders filled.
    """
    waiting = Order.objects.filter(status=OrderStatus.AWAITING_STOCK)
    if product_id is not None:
        waiting = waiting.filter(lines__product_id=product_id)
    blocked: set[int] = set()
    filled = 0
    for order_id in waiting.order_by("paid_at", "id").values_list("pk", flat=True).distinct():
        with transaction.atomic():
            order = (
                Order.objects.select_for_update(skip_locked=True)
                .filter(pk=order_id, status=OrderStatus.AWAITING_STOCK).first()
            )
            if order is None:
                continue
            products = set(order.lines.values_list("product_id", flat=True))
            if products & blocked:
                continue
            if order_fulfil(order=order) == OrderStatus.FULFILLING:
                filled += 1
            else:
                blocked |= products
    return filled


def product_stock_import(*, product: Product, entries, source: str, created_by=None, progress=None):
    """Import keys, then serve the orders that were waiting for them and re-arm
    the low-stock alert. Returns the import report."""
    report = inventory_services.keys_import(
        product=product, entries=entries, source=source, created_by=created_by, progress=progress
    )
    if report.added:
        order_fill_from_stock(product_id=product.pk)
        inventory_services.low_stock_rearm(product_id=product.pk)
    return report


def order_key_replace(*, order_id: int, key_id: int, actor: str, reason: str, ip: str | None = None) -> int:
    """Replace a delivered key that does not work: the old one is voided (kept
    on the line as evidence), a new one is reserved and handed over to the
    inbox in the same transaction. Returns the new key's id."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status not in Order.KEYS_VISIBLE:
            raise OrderTransitionError(order=order, wanted="key replaced")
        key = order_key_get(order=order, key_id=key_id)
        line = key.order_line
        inventory_services.key_void_delivered(key_id=key_id, line=line, reason=reason, actor=actor, ip=ip)
        new_id = inventory_services.keys_reserve(line=line, quantity=1)[0]
        inventory_services.keys_mark_delivered(line=line)
        order_event_record(
            order=order, type=OrderEventType.KEY_REPLACED, actor=actor,
            data={"old_key": key_id, "new_key": new_id, "reason": reason[:200]},
        )
        product_low_stock_check(product_id=line.product_id)
    return new_id


def order_key_get(*, order: Order, key_id: int):
    key = key_on_order(order_id=order.pk, key_id=key_id)
    if key is None:
        raise inventory_services.KeyStateError("KEY_NOT_ON_ORDER", "this key is not on this order")
    return key
