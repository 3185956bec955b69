"""Checkout's payment side: place the order and hand the buyer to the chosen
payment method; and open another payment for an unpaid order (Pay now).

The provider is asked for the pay action (a redirect, a form to post, a QR
code to show) after commit, since for most providers that is a network call;
the action is kept on the Payment so the pay page can be shown again.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.urls import reverse

from payments.methods import ProviderUnknown, method_provider
from payments.models import Payment, PaymentStatus
from payments.providers.base import PayAction, PayActionKind, PaymentProvider, ProviderUnreachable
from shop.models import Order, OrderStatus, Product
from shop.services import PlacedOrder, checkout_place_prepared, checkout_prepare

logger = logging.getLogger(__name__)


class PaymentStartFailed(Exception):
    """The order exists, but the provider could not open its payment now
    (unreachable, refused): the buyer can retry or pick another method from
    the order page."""

    def __init__(self, code: str, message: str, *, order: Order | None = None, token: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.order = order
        self.token = token


class OrderNotPayable(Exception):
    code = "ORDER_NOT_PAYABLE"


@dataclass(frozen=True)
class CheckoutStarted:
    order: Order
    token: str
    payment: Payment
    action: PayAction
    pay_url: str  # where to send the buyer: the gateway, or the shop's own pay page


def pay_url_for(*, payment: Payment, action: PayAction) -> str:
    """The gateway for a redirect; the shop's pay page for a form or a QR code."""
    if action.kind == PayActionKind.REDIRECT:
        return action.url
    return reverse("payments:pay", args=[payment.reference])


def _method_offered(*, provider: PaymentProvider, product_id: int | None, amount,
                    parent_id: int | None = None) -> PaymentProvider:
    """``provider`` if its method is offered for this product (a variant of
    ``parent_id``) and amount; else ProviderUnknown."""
    if not provider.config.offered_for(product_id=product_id, amount=amount, parent_id=parent_id):
        raise ProviderUnknown(provider.id)
    return provider


def _payment_action_offline(*, provider: PaymentProvider, payment: Payment) -> PayAction | None:
    """The pay action of a provider that makes it without a network call
    (``start_offline``: a signed redirect or form), set on the payment before
    its INSERT, so no UPDATE follows the commit. None for the others, and
    when it fails: the payment is then opened after commit as before, which
    reports the failure with the order kept."""
    if not provider.start_offline:
        return None
    try:
        action = provider.start(payment=payment)
    except Exception:  # noqa: BLE001 - reported by _payment_action_open's second try, after commit
        return None
    payment.pay_action, payment.checkout_id = action.as_json(), action.checkout_id
    return action


def _payment_action_open(*, provider: PaymentProvider, payment: Payment) -> PayAction:
    """Ask the provider; keep the answer on the payment. Outside any transaction."""
    try:
        action = provider.start(payment=payment)
    except ProviderUnreachable as exc:
        logger.warning("%s could not open payment %s: %s", provider.id, payment.reference, exc.code)
        raise PaymentStartFailed("PROVIDER_UNAVAILABLE", str(exc), order=payment.order) from None
    except Exception as exc:  # noqa: BLE001 - a provider SDK's own errors: the order stays payable
        logger.error("%s could not open payment %s: %s", provider.id, payment.reference, type(exc).__name__)
        raise PaymentStartFailed("PROVIDER_UNAVAILABLE", type(exc).__name__, order=payment.order) from None
    Payment.objects.filter(pk=payment.pk).update(pay_action=action.as_json(), checkout_id=action.checkout_id)
    payment.pay_action, payment.checkout_id = action.as_json(), action.checkout_id
    return action


def checkout_start_payment(
    *, product_slug: str, quantity: int, email: str, phone: str = "", provider_id: str, client_ip: str | None = None,
    device: str = "", user_agent: str = "", coupon: str = "", query_password: str = "", variant: int | None = None,
    fields: dict | None = None, product_read: Product | None = None,
) -> CheckoutStarted:
    """Place the order and open its payment with the chosen method.

    The risk assessment commits on its own first (a refusal keeps its
    reference); the order and payment rows then commit together; the provider
    is asked for the pay action after commit. A method that is not offered
    for this product and amount is refused before any order exists.
    ``product_read``: see ``checkout_prepare``.
    """
    provider = method_provider(provider_id)  # unknown method: refused before the assessment
    ticket = checkout_prepare(
        product_slug=product_slug, quantity=quantity, email=email, phone=phone, client_ip=client_ip,
        device=device, user_agent=user_agent, coupon=coupon, query_password=query_password, variant=variant,
        fields=fields, product_read=product_read,
    )
    amount = ticket.quote.amount if ticket.quote is not None else ticket.product.price * quantity
    _method_offered(provider=provider, product_id=ticket.product.pk, amount=amount,
                    parent_id=ticket.product.parent_id)
    with transaction.atomic():
        # No savepoint: a refusal leaves this block too, rolling it all back.
        placed: PlacedOrder = checkout_place_prepared(ticket=ticket, savepoint=False)
        order = placed.order
        payment = Payment(
            order=order, provider=provider.id, reference=order.order_no,
            amount=provider.config.amount_for(order.amount), currency=order.currency,
        )
        payment.subject = str(ticket.product)  # read by this checkout (a variant with its product)
        action = _payment_action_offline(provider=provider, payment=payment)
        payment.save(force_insert=True)
    if action is None:
        try:
            action = _payment_action_open(provider=provider, payment=payment)
        except PaymentStartFailed as exc:
            exc.token = placed.token
            raise
    return CheckoutStarted(order=order, token=placed.token, payment=payment, action=action,
                           pay_url=pay_url_for(payment=payment, action=action))


def payment_open(*, order_id: int, method_id: str) -> tuple[Payment, str]:
    """Pay now: a payment for an unpaid order with ``method_id`` (the same
    method as before or another); returns it and where to send the buyer.

    An open payment of that method is shown again rather than a new one
    opened (one trade per merchant order at the gateway). Paying both is
    safe: the second payment is recorded as extra and raised to the owner.
    """
    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise OrderNotPayable(order.status)
    line = order.lines.order_by("id").first()
    provider = _method_offered(provider=method_provider(method_id), product_id=line.product_id if line else None,
                               amount=order.amount)
    payment = order.payments.filter(provider=provider.id, status=PaymentStatus.CREATED).order_by("-id").first()
    if payment is not None and payment.pay_action:
        action = PayAction.from_json(payment.pay_action)
        return payment, pay_url_for(payment=payment, action=action)
    # A payment whose start failed may still exist at the gateway (epusdt
    # never takes an order id twice): a fresh reference, never a retry of it.
    payment = Payment.objects.create(
        order=order, provider=provider.id, reference=f"{order.order_no}-{secrets.token_hex(3).upper()}",
        amount=provider.config.amount_for(order.amount), currency=order.currency,
    )
    action = _payment_action_open(provider=provider, payment=payment)
    return payment, pay_url_for(payment=payment, action=action)
