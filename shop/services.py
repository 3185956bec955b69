"""The order's life: checkout, paid, fulfilment, delivery. Owns Order transitions."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from delivery import services as delivery_services
from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus
from inventory import services as inventory_services
from inventory.selectors import key_on_order
from riskctl.services import checkout_screen
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


def checkout_place_order(
    *, product_slug: str, quantity: int, email: str, phone: str = "", client_ip: str | None = None
) -> PlacedOrder:
    """Validate, screen and create a PENDING_PAYMENT order holding its stock.

    The product row is locked while the free stock (available keys minus live
    holds) is counted and the order written, so two buyers can never be sent
    to pay for the same last key. The hold lapses after ORDER_HOLD_MINUTES.
    """
    email = (email or "").strip()
    phone = (phone or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise CheckoutError(code="EMAIL_INVALID", message="Enter a valid email address.", field="email") from None
    if phone and not phone.lstrip("+").isdigit():
        raise CheckoutError(code="PHONE_INVALID", message="A phone number has digits only.", field="phone")
    checkout_screen(email=email, ip=client_ip)
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(slug=product_slug, active=True).first()
        if product is None:
            raise CheckoutError(code="PRODUCT_NOT_FOUND", message="This product is not for sale.", field="product")
        if not isinstance(quantity, int) or not 1 <= quantity <= product.max_per_order:
            raise CheckoutError(
                code="QUANTITY_INVALID",
                message=f"Choose between 1 and {product.max_per_order}.",
                field="quantity",
            )
        free = product_stock(product=product)
        if quantity > free:
            raise CheckoutError(code="OUT_OF_STOCK", message=_out_of_stock_message(product, free), field="quantity")
        token, token_hash = order_token_new()
        amount = product.price * quantity
        order = _order_create(
            token_hash=token_hash, email=email, phone=phone, amount=amount, currency=product.currency,
            client_ip=client_ip, hold_expires_at=timezone.now() + timedelta(minutes=settings.ORDER_HOLD_MINUTES),
        )
        OrderLine.objects.create(order=order, product=product, quantity=quantity, unit_price=product.price, amount=amount)
        order_event_record(order=order, type=OrderEventType.CREATED, actor="buyer", data={"quantity": quantity})
    return PlacedOrder(order=order, token=token)


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
    for line in lines:
        inventory_services.keys_mark_delivered(line=line)
    channels = [(Channel.INBOX, ""), (Channel.EMAIL, order.email)]
    delivery_services.deliveries_create(order=order, channels=channels)
    _order_transition(order=order, source=[source], target=OrderStatus.FULFILLING)
    order_event_record(order=order, type=OrderEventType.DELIVERY_SENT, data={"channel": Channel.INBOX})
    for product_id in {line.product_id for line in lines}:
        product_low_stock_check(product_id=product_id)
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
    delivery = delivery_services.delivery_send(delivery_id=delivery_id)
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
    return delivery.status


def order_delivery_failed(*, delivery_id: int) -> bool:
    """After a failed attempt: once the retries are used up, dead-letter the delivery."""
    if not delivery_services.delivery_attempts_exhausted(delivery_id=delivery_id):
        return False
    with transaction.atomic():
        if not delivery_services.delivery_mark_failed(delivery_id=delivery_id):
            return False
        delivery = Delivery.objects.get(pk=delivery_id)
        order = Order.objects.get(pk=delivery.order_id)
        order_event_record(
            order=order, type=OrderEventType.DELIVERY_FAILED,
            data={"channel": delivery.channel, "attempts": delivery.attempts},
        )
    logger.error("delivery %s dead-lettered after %d attempts", delivery_id, delivery.attempts)
    return True
