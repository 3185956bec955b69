"""The order's life: checkout, paid, fulfilment, delivery. Owns Order transitions."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus
from inventory import services as inventory_services
from inventory.selectors import key_on_order
from riskctl.identity import BuyerContext, email_normalise, phone_normalise
from riskctl.models import RiskEventKind
from riskctl.services import (
    CheckoutBlocked, LimitExceeded, assessment_attach, checkout_assess, payment_assess, review_decide, review_open,
    review_pending, risk_event_for_order,
)
from shop.access import order_token_new
from shop.models import Order, OrderEvent, OrderEventType, OrderLine, OrderStatus, Product
from shop.selectors import product_holds, product_stock

logger = logging.getLogger(__name__)

SYSTEM = "system"


class CheckoutError(Exception):
    def __init__(self, *, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class OrderTransitionError(Exception):
    """The order is not in a state that allows this step."""

    def __init__(self, *, order, wanted: str):
        super().__init__(f"order {order.order_no} is {order.status}, cannot become {wanted}")
        self.code = "ORDER_STATE_CONFLICT"


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    token: str  # shown to the buyer once; only its hash is stored


def order_event_record(*, order, type: str, actor: str = SYSTEM, data: dict | None = None) -> OrderEvent:
    return OrderEvent.objects.create(order=order, type=type, actor=actor, data=data or {})


def _order_no_new() -> str:
    """Date plus 8 random digits: easy to read out over the phone, hard to guess."""
    return f"{timezone.localdate():%y%m%d}{secrets.randbelow(10**8):08d}"


@dataclass(frozen=True)
class CheckoutTicket:
    """A checkout that passed validation and the risk assessment."""

    product: Product
    quantity: int
    email: str
    phone: str
    client_ip: str | None
    assessment: object


def checkout_prepare(
    *, product_slug: str, quantity: int, email: str, phone: str = "", client_ip: str | None = None,
    device: str = "", user_agent: str = "",
) -> CheckoutTicket:
    """Validate the input and assess the buyer, outside any transaction: the
    assessment is kept even when it refuses, so a blocked buyer's reference
    (CheckoutBlocked.ref) can be looked up by staff."""
    email = (email or "").strip()
    phone = (phone or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise CheckoutError(code="EMAIL_INVALID", message="Enter a valid email address.", field="email") from None
    if phone and not phone.lstrip("+").isdigit():
        raise CheckoutError(code="PHONE_INVALID", message="A phone number has digits only.", field="phone")
    product = Product.objects.filter(slug=product_slug, active=True).first()
    if product is None:
        raise CheckoutError(code="PRODUCT_NOT_FOUND", message="This product is not for sale.", field="product")
    if not isinstance(quantity, int) or not 1 <= quantity <= product.max_per_order:
        raise CheckoutError(
            code="QUANTITY_INVALID", message=f"Choose between 1 and {product.max_per_order}.", field="quantity",
        )
    buyer = BuyerContext(email=email_normalise(email), ip=client_ip or "", device=device,
                         phone=phone_normalise(phone) if phone else "", user_agent=user_agent[:300])
    try:
        assessment = checkout_assess(buyer=buyer, product_id=product.pk, quantity=quantity,
                                     amount=product.price * quantity)
    except LimitExceeded as exc:
        raise CheckoutError(code=exc.code, message=exc.message, field="quantity") from None
    except CheckoutBlocked as blocked:
        _risk_blocked_alert(buyer=buyer, ref=blocked.ref)
        raise
    return CheckoutTicket(product=product, quantity=quantity, email=email, phone=phone, client_ip=client_ip,
                          assessment=assessment)


def checkout_place_prepared(*, ticket: CheckoutTicket) -> PlacedOrder:
    """Create the PENDING_PAYMENT order holding its stock.

    The product row is locked while the free stock (available keys minus live
    holds) is counted and the order written, so two buyers can never be sent
    to pay for the same last key. The hold lapses after ORDER_HOLD_MINUTES.
    """
    quantity = ticket.quantity
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(pk=ticket.product.pk, active=True).first()
        if product is None:
            raise CheckoutError(code="PRODUCT_NOT_FOUND", message="This product is not for sale.", field="product")
        free = product_stock(product=product)
        if quantity > free:
            raise CheckoutError(code="OUT_OF_STOCK", message=_out_of_stock_message(product, free), field="quantity")
        token, token_hash = order_token_new()
        amount = product.price * quantity
        order = _order_create(
            token_hash=token_hash, email=ticket.email, phone=ticket.phone, amount=amount, currency=product.currency,
            client_ip=ticket.client_ip,
            hold_expires_at=timezone.now() + timedelta(minutes=settings.ORDER_HOLD_MINUTES),
        )
        OrderLine.objects.create(order=order, product=product, quantity=quantity, unit_price=product.price, amount=amount)
        order_event_record(order=order, type=OrderEventType.CREATED, actor="buyer", data={"quantity": quantity})
        assessment_attach(assessment=ticket.assessment, order_id=order.pk, product_id=product.pk, quantity=quantity)
    return PlacedOrder(order=order, token=token)


def checkout_place_order(**fields) -> PlacedOrder:
    """``checkout_prepare`` then ``checkout_place_prepared``. Do not call it
    inside a transaction (a refusal's assessment must survive)."""
    return checkout_place_prepared(ticket=checkout_prepare(**fields))


def _risk_blocked_alert(*, buyer: BuyerContext, ref: str) -> None:
    """One owner alert per blocked source and hour, not one per attempt."""
    source = buyer.device or buyer.ip or buyer.email
    owner_alert_raise(
        kind=AlertKind.REVIEW, dedupe_key=f"risk-blocked:{source}",
        subject="Checkouts blocked by risk rules",
        body=f"Checkouts were blocked (first reference {ref}); see Risk control → Assessments.",
    )


def _out_of_stock_message(product: Product, free: int) -> str:
    message = f"Only {free} left." if free else "Sold out."
    held, next_release = product_holds(product=product)
    if held and next_release is not None:
        local = timezone.localtime(next_release)
        message += (
            f" {held} more {'is' if held == 1 else 'are'} held for buyers who have not paid yet;"
            f" unpaid holds end from {local:%H:%M} ({local:%Z})."
        )
    return message


def _order_create(**fields) -> Order:
    for _ in range(5):
        try:
            with transaction.atomic():
                return Order.objects.create(order_no=_order_no_new(), **fields)
        except IntegrityError:
            continue  # order number collision: draw again
    raise RuntimeError("could not draw a free order number")


def order_mark_paid(*, order: Order, actor: str, data: dict | None = None) -> None:
    """PENDING_PAYMENT or EXPIRED → PAID. Call inside a transaction holding the order's lock.

    A payment for an expired order is accepted: money is never dropped.
    """
    now = timezone.now()
    late = order.status == OrderStatus.EXPIRED
    updated = Order.objects.filter(
        pk=order.pk, status__in=[OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED]
    ).update(status=OrderStatus.PAID, paid_at=now, updated_at=now, hold_expires_at=None)
    if updated != 1:
        raise OrderTransitionError(order=order, wanted=OrderStatus.PAID)
    order.status, order.paid_at, order.hold_expires_at = OrderStatus.PAID, now, None
    order_event_record(order=order, type=OrderEventType.PAID, actor=actor, data={**(data or {}), "late": late})


def _order_transition(*, order: Order, source: list[str], target: str, **fields) -> None:
    now = timezone.now()
    updated = Order.objects.filter(pk=order.pk, status__in=source).update(status=target, updated_at=now, **fields)
    if updated != 1:
        raise OrderTransitionError(order=order, wanted=target)
    order.status = target
    for name, value in fields.items():
        setattr(order, name, value)


def order_fulfil(*, order: Order) -> str:
    """Reserve the keys of a PAID (or AWAITING_STOCK) order and hand them over.
    Call inside a transaction holding the order's lock. Returns the new status.

    All lines get their keys or none do: short of stock → AWAITING_STOCK (no
    partial delivery; an order already waiting just keeps waiting). Otherwise
    the keys go to the buyer's inbox (the order page) in this transaction and
    one outbox Delivery per other channel is written, to be sent after commit.
    """
    source = order.status
    lines = list(order.lines.all())
    review = _order_review_at_payment(order=order, lines=lines) if source == OrderStatus.PAID else \
        review_pending(order_id=order.pk)
    try:
        with transaction.atomic():
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
    order_handover(order=order, lines=lines, source=source)
    return order.status


def _order_review_at_payment(*, order: Order, lines: list) -> object | None:
    """Assess a just-paid order; on REVIEW open the review item, tell the
    owner (one digest per window, not one mail per order) and return it."""
    assessment = payment_assess(order_id=order.pk, lines=[(line.product_id, line.quantity) for line in lines],
                                amount=order.amount)
    if assessment.decision != "REVIEW":
        return None
    review = review_open(order_id=order.pk, assessment=assessment)
    order_event_record(order=order, type=OrderEventType.REVIEW_OPENED,
                       data={"ref": assessment.ref, "score": assessment.score})
    owner_alert_raise(
        kind=AlertKind.REVIEW, dedupe_key="review-queue",
        subject="Orders are waiting for review",
        body=f"Order {order.order_no} (score {assessment.score}) and possibly others wait in the review queue.",
    )
    return review


def order_handover(*, order: Order, lines: list, source: str) -> None:
    """Reveal reserved keys: inbox now, other channels from the outbox. Call
    inside a transaction holding the order's lock."""
    for line in lines:
        inventory_services.keys_mark_delivered(line=line)
    channels = [(Channel.INBOX, ""), (Channel.EMAIL, order.email)]
    if order.phone:  # the buyer gave a phone number: the key by SMS too
        channels.append((Channel.SMS, order.phone))
    delivery_services.deliveries_create(order=order, channels=channels)
    _order_transition(order=order, source=[source], target=OrderStatus.FULFILLING)
    order_event_record(order=order, type=OrderEventType.DELIVERY_SENT, data={"channel": Channel.INBOX})
    for product_id in {line.product_id for line in lines}:
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
            order_handover(order=order, lines=list(order.lines.all()), source=OrderStatus.IN_REVIEW)
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
        if order.status == OrderStatus.FULFILLING and delivery_services.deliveries_all_sent(order_id=order.pk):
            _order_transition(
                order=order, source=[OrderStatus.FULFILLING], target=OrderStatus.DELIVERED,
                delivered_at=timezone.now(),
            )
            order_event_record(order=order, type=OrderEventType.DELIVERED)
            risk_event_for_order(kind=RiskEventKind.DELIVERED, order_id=order.pk, amount=order.amount)
    return delivery.status


def order_delivery_failed(*, delivery_id: int) -> bool:
    """After a failed attempt: once the retries are used up, dead-letter the delivery."""
    if not delivery_services.delivery_attempts_exhausted(delivery_id=delivery_id):
        return False
    return order_delivery_dead_letter(delivery_id=delivery_id)


# --- delivery follow-up ---


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
            filled=order_fill_from_stock(), stuck=orders_stuck_alert(),
        )
        delivery_services.sweep_run_record(
            name="sweep", started_at=started_at,
            result={
                "requeued": report.requeued, "expired": report.expired, "filled": report.filled, "stuck": report.stuck,
            },
        )
        return report
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [SWEEP_LOCK])


# --- refunds ---

# An order may be refunded while its keys are not yet in the buyer's hands.
REFUNDABLE_STATUSES = (OrderStatus.PAID, OrderStatus.IN_REVIEW, OrderStatus.AWAITING_STOCK)


def order_refund_begin(*, order: Order, actor: str, reason: str) -> int:
    """PAID / IN_REVIEW / AWAITING_STOCK → REFUNDED: the order will deliver
    nothing, its reserved keys go back to stock. Call inside a transaction
    holding the payment's and then the order's lock; the money itself is
    given back by payments (``payment_refund``). Returns the keys released."""
    _order_transition(order=order, source=list(REFUNDABLE_STATUSES), target=OrderStatus.REFUNDED)
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
