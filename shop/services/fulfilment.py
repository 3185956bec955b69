"""Fulfilment: keys for paid orders, review holds, waiting orders, replacements.

One implementation serves one order and a flash sale's batch:
``orders_fulfil`` works on a set (one assessment, one claim, one insert of
the deliveries and of the events, one UPDATE per new status) and
``order_fulfil`` is a set of one.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, Channel
from inventory import services as inventory_services
from inventory.selectors import key_on_order
from riskctl.services import PaidOrder, payments_assess, review_decide, review_open, review_pending
from shop.models import Order, OrderLine, OrderStatus, Product
from shop.project.locks import order_lock, orders_lock
from shop.services.events import (
    SYSTEM,
    event_awaiting_stock,
    event_delivery_sent,
    event_key_replaced,
    event_keys_reserved,
    event_review_decided,
    event_review_opened,
    event_stock_filled,
    events_save,
)
from shop.services.lifecycle import OrderTransitionError, orders_move
from shop.services.manual import lines_manual, orders_queue_manual
from shop.webhook_events import product_low_stock_webhook_emit

logger = logging.getLogger(__name__)

S = OrderStatus


def orders_fulfil(*, orders: list[Order], outbox: list[int] | None = None, assessments: dict | None = None,
                  hold_reasons: dict[int, str] | None = None, lines_of: dict[int, list] | None = None) -> dict[int, str]:
    """Claim the keys of PAID (or AWAITING_STOCK) orders and hand them over,
    in the order given. Call inside a transaction holding the orders' locks.
    Returns each order's new status by id.

    A just-PAID order is assessed first (``assessments`` by order id, when
    the caller made them): REVIEW, or a ``hold_reasons`` entry (e.g. the
    provider reported a dispute before the payment), holds it for a human
    with its keys set aside, not revealed. An order gets all its keys or none:
    short of stock, a PAID order waits (AWAITING_STOCK; filled on restock,
    oldest first), one already waiting keeps waiting. A manual product's
    order has no stock to claim: paid, it goes to the staff's queue
    (PREPARING; IN_REVIEW first when held), and it is served here once staff
    entered its content (``shop.services.manual``). Otherwise the keys go
    to the buyer's inbox (the order page) in this transaction and one outbox
    Delivery per other channel is written, to be sent after commit: enqueued
    after commit here, or, given an ``outbox`` list, left to the caller
    (their ids are appended), who enqueues a whole batch at once. A caller
    that has the orders' lines (by order id, with their products, by id)
    passes them as ``lines_of``.
    """
    if not orders:
        return {}
    hold_reasons = hold_reasons or {}
    if lines_of is None:
        lines_of = _lines_of(orders)
    paid = [order for order in orders if order.status == S.PAID]
    unassessed = [order for order in paid if assessments is None or order.pk not in assessments]
    assessments = {**(assessments or {}), **payments_assess(orders=[
        PaidOrder(order_id=o.pk, lines=[(line.product_id, line.quantity) for line in lines_of[o.pk]], amount=o.amount)
        for o in unassessed
    ])} if unassessed else (assessments or {})
    events = []
    held = set()
    for order in orders:
        if order.status == S.PAID:
            hold = assessments[order.pk].decision == "REVIEW" or order.pk in hold_reasons
            if hold:
                events.append(_review_open(order=order, assessment=assessments[order.pk],
                                           hold_reason=hold_reasons.get(order.pk, "")))
        else:
            hold = review_pending(order_id=order.pk) is not None
        if hold:
            held.add(order.pk)
    outcomes = inventory_services.keys_claim(requests=[
        inventory_services.ClaimRequest(lines=[_line_claim(line) for line in lines_of[order.pk]],
                                        reveal=order.pk not in held)
        for order in orders
    ])
    waiting, held_served, served, queued, reviewed = [], [], [], [], []
    for order, outcome in zip(orders, outcomes):
        if outcome.short is not None and lines_manual(lines_of[order.pk]):
            if order.status == S.PAID:  # no content yet: staff prepare it (after the review, if held)
                (reviewed if order.pk in held else queued).append(order)
            continue
        if outcome.short is not None:
            if order.status == S.PAID:
                waiting.append(order)
                events.append(event_awaiting_stock(order, wanted=outcome.short[0], free=outcome.short[1]))
            continue
        if order.status == S.AWAITING_STOCK:
            events.append(event_stock_filled(order))
        events.append(event_keys_reserved(order, keys=sum(len(keys) for keys in outcome.keys.values())))
        (held_served if order.pk in held else served).append(order)
    if waiting:  # one line per batch: a sell-out in a flash sale is thousands of them
        logger.warning("%d orders awaiting stock: %s", len(waiting), ", ".join(order.order_no for order in waiting))
    orders_move(orders=waiting, source=[S.PAID], target=S.AWAITING_STOCK)
    orders_move(orders=reviewed, source=[S.PAID], target=S.IN_REVIEW)
    orders_queue_manual(orders=queued, lines_of=lines_of, source=S.PAID)
    for source in (S.PAID, S.AWAITING_STOCK):
        orders_move(orders=[o for o in held_served if o.status == source], source=[source], target=S.IN_REVIEW)
    events_save(*events)
    orders_hand_over(orders=served, lines_of=lines_of, outbox=outbox, revealed=True)
    return {order.pk: order.status for order in orders}


def order_fulfil(*, order: Order, outbox: list[int] | None = None, hold_reason: str = "") -> str:
    """``orders_fulfil`` for one order; returns its new status."""
    hold_reasons = {order.pk: hold_reason} if hold_reason else None
    return orders_fulfil(orders=[order], outbox=outbox, hold_reasons=hold_reasons)[order.pk]


def _review_open(*, order: Order, assessment, hold_reason: str = ""):
    """Open the review item of a just-paid order and tell the owner (one
    digest per window, not one mail per order); returns the timeline event."""
    review_open(order_id=order.pk, assessment=assessment)
    owner_alert_raise(
        kind=AlertKind.REVIEW, dedupe_key="review-queue",
        subject="Orders are waiting for review",
        body=f"Order {order.order_no} (score {assessment.score}) and possibly others wait in the review queue.",
    )
    return event_review_opened(order, ref=assessment.ref, score=assessment.score, reason=hold_reason)


def orders_hand_over(*, orders: list[Order], lines_of: dict[int, list] | None = None,
                     outbox: list[int] | None = None, revealed: bool = False) -> None:
    """Hand the orders' keys over: inbox now, other channels from the outbox
    (``outbox`` as in ``orders_fulfil``); FULFILLING. ``revealed``: the claim
    already handed the keys over (else they are RESERVED, e.g. after review).
    Call inside a transaction holding the orders' locks."""
    if not orders:
        return
    if lines_of is None:
        lines_of = _lines_of(orders)
    if not revealed:
        for order in orders:
            for line in lines_of[order.pk]:
                inventory_services.keys_mark_delivered(line=line)
    created = delivery_services.deliveries_create_many(
        orders=[(order, _order_channels(order=order, lines=lines_of[order.pk])) for order in orders])
    sending = [delivery.pk for delivery in created if delivery.channel != Channel.INBOX]
    if outbox is not None:
        outbox.extend(sending)
    elif sending:
        transaction.on_commit(lambda: delivery_services.deliveries_enqueue(delivery_ids=sending), robust=True)
    for source in {order.status for order in orders}:
        orders_move(orders=[o for o in orders if o.status == source], source=[source], target=S.FULFILLING)
    events_save(*(event_delivery_sent(order, channel=Channel.INBOX) for order in orders))
    for product_id in sorted({line.product_id for order in orders for line in lines_of[order.pk]}):
        product_low_stock_check(product_id=product_id)


def _line_claim(line) -> inventory_services.LineClaim:
    """A manual product's line takes one key, its content, and only the one
    staff entered for it (never stock); any other line its quantity of keys."""
    if lines_manual([line]):
        return inventory_services.line_claim(line, quantity=1, from_stock=False)
    return inventory_services.line_claim(line)


def _lines_of(orders: list[Order]) -> dict[int, list]:
    """The orders' lines with their products, by order id, in id order."""
    lines_of: dict[int, list] = defaultdict(list)
    for line in OrderLine.objects.filter(order__in=orders).select_related("product", "order").order_by("id"):
        lines_of[line.order_id].append(line)
    return lines_of


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


def order_review_approve(*, order_id: int, user=None, note: str = "") -> str:
    """A human approved a held order: deliver it (or, if it is still waiting
    for stock, let the fill deliver it). Returns the order's status."""
    with transaction.atomic():
        order = order_lock(id=order_id)
        review_decide(order_id=order_id, outcome="APPROVED", user=user, note=note)
        actor = f"staff:{user.get_username()}" if user else SYSTEM
        events_save(event_review_decided(order, approved=True, actor=actor, note=note))
        if order.status == S.IN_REVIEW and lines_manual(lines := _lines_of([order])[order.pk]):
            orders_queue_manual(orders=[order], lines_of={order.pk: lines}, source=S.IN_REVIEW)
        elif order.status == S.IN_REVIEW:
            orders_hand_over(orders=[order])
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
        subject=f"Low stock: {product} is down to {policy.low_stock_threshold} keys or fewer",
        body=f"Import more keys for {product} ({product.slug}).",
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
    waiting = Order.objects.filter(status=S.AWAITING_STOCK)
    if product_id is not None:
        waiting = waiting.filter(lines__product_id=product_id)
    blocked: set[int] = set()
    filled = 0
    for order_id in waiting.order_by("paid_at", "id").values_list("pk", flat=True).distinct():
        with transaction.atomic():
            locked = orders_lock(ids=[order_id], skip_locked=True, status=S.AWAITING_STOCK)
            if not locked:
                continue
            order = locked[0]
            products = set(order.lines.values_list("product_id", flat=True))
            if products & blocked:
                continue
            if order_fulfil(order=order) == S.AWAITING_STOCK:
                blocked |= products
            else:
                filled += 1
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
        order = order_lock(id=order_id)
        if order.status not in Order.KEYS_VISIBLE:
            raise OrderTransitionError(order=order, wanted="key replaced")
        key = order_key_get(order=order, key_id=key_id)
        line = key.order_line
        inventory_services.key_void_delivered(key_id=key_id, line=line, reason=reason, actor=actor, ip=ip)
        new_id = inventory_services.keys_reserve(line=line, quantity=1)[0]
        inventory_services.keys_mark_delivered(line=line)
        events_save(event_key_replaced(order, actor=actor, old_key=key_id, new_key=new_id, reason=reason))
        product_low_stock_check(product_id=line.product_id)
    return new_id


def order_key_get(*, order: Order, key_id: int):
    key = key_on_order(order_id=order.pk, key_id=key_id)
    if key is None:
        raise inventory_services.KeyStateError("KEY_NOT_ON_ORDER", "this key is not on this order")
    return key
