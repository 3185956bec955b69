"""Checkout: validate, assess the buyer, hold stock, create the order."""

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

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from riskctl.identity import BuyerContext, email_normalise, phone_normalise
from riskctl.services import (
    CheckoutBlocked,
    LimitExceeded,
    assessment_attach,
    checkout_assess,
)
from shop.access import order_token_new
from shop.models import (
    Order,
    OrderEventType,
    OrderLine,
    Product,
)
from shop.selectors import product_holds, product_stock
from shop.services.orders import order_event_record

logger = logging.getLogger(__name__)


class CheckoutError(Exception):
    def __init__(self, *, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    token: str  # shown to the buyer once; only its hash is stored


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
