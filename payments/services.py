"""Payments: starting one at checkout and handling the provider's callback.

The callback path is where shops lose or double-count money, so it follows
DESIGN.md to the letter: the signature is verified before the database is
touched (by the provider, in ``parse_callback``); then ONE transaction records
the notice under a unique (provider, external id) key, checks it against the
payment, locks Payment → Order, moves the order to PAID and fulfils it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import django_rq
from django.db import IntegrityError, transaction
from django.utils import timezone
from rq import Retry

from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from payments.providers import provider_get
from payments.providers.base import CallbackNotice
from shop.models import Order, OrderEventType, OrderStatus
from shop.services import PlacedOrder, checkout_place_order, order_event_record, order_fulfil, order_mark_paid

logger = logging.getLogger(__name__)

# Seconds between the sandbox gateway's notify attempts (a real gateway's back-off, shortened).
SANDBOX_NOTIFY_RETRIES = [1, 2, 5, 10, 30, 60]


@dataclass(frozen=True)
class CheckoutStarted:
    order: Order
    token: str
    pay_url: str


def checkout_start_payment(
    *, product_slug: str, quantity: int, email: str, phone: str = "", provider_id: str, client_ip: str | None = None
) -> CheckoutStarted:
    """Place the order and open its payment with the chosen provider.

    The order and payment rows commit together; the provider is asked for the
    pay URL after commit, since for some providers that is a network call.
    """
    provider = provider_get(provider_id)  # unknown provider: refused before any row exists
    with transaction.atomic():
        placed: PlacedOrder = checkout_place_order(
            product_slug=product_slug, quantity=quantity, email=email, phone=phone, client_ip=client_ip
        )
        order = placed.order
        payment = Payment.objects.create(
            order=order, provider=provider.id, reference=order.order_no, amount=order.amount, currency=order.currency
        )
    return CheckoutStarted(order=order, token=placed.token, pay_url=provider.start(payment=payment))


@dataclass(frozen=True)
class CallbackOutcome:
    accepted: bool
    code: str = ""
    duplicate: bool = False


def payment_callback_handle(*, provider_id: str, notice: CallbackNotice) -> CallbackOutcome:
    """Apply a verified notice exactly once; return what to answer the provider.

    A duplicate (same provider + external id) is answered as the first one was
    and changes nothing. A notice that does not match its payment (amount,
    currency, unknown reference) is recorded as REJECTED and changes nothing
    else. Returns only after commit, so "success" is never sent for a change
    that could still roll back.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = PaymentEvent.objects.create(
                    provider=provider_id, external_id=notice.external_id, reference=notice.reference,
                    amount=notice.amount, currency=notice.currency, payload=notice.payload,
                    outcome=PaymentEventOutcome.REJECTED,  # until proven otherwise
                )
        except IntegrityError:
            prior = PaymentEvent.objects.get(provider=provider_id, external_id=notice.external_id)
            return CallbackOutcome(
                accepted=prior.outcome != PaymentEventOutcome.REJECTED, code=prior.reason_code, duplicate=True
            )

        payment = Payment.objects.select_for_update().filter(provider=provider_id, reference=notice.reference).first()
        if payment is None:
            return _event_reject(event, "ORDER_UNKNOWN")
        event.payment = payment
        if notice.amount != payment.amount or notice.currency != payment.currency:
            return _event_reject(event, "AMOUNT_MISMATCH")
        if not notice.succeeded:
            return _event_settle(event, PaymentEventOutcome.IGNORED)

        order = Order.objects.select_for_update().get(pk=payment.order_id)
        if payment.status != PaymentStatus.CREATED or order.status not in (
            OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED
        ):
            # Paid a second time under another transaction id: keep the money
            # on record for a refund, deliver nothing more.
            order_event_record(
                order=order, type=OrderEventType.PAYMENT_EXTRA, actor=f"provider:{provider_id}",
                data={"external_id": notice.external_id, "amount": str(notice.amount)},
            )
            logger.warning("order %s: extra payment %s", order.order_no, notice.external_id)
            return _event_settle(event, PaymentEventOutcome.EXTRA)

        updated = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.CREATED).update(
            status=PaymentStatus.SUCCEEDED, external_id=notice.external_id, succeeded_at=timezone.now()
        )
        if updated != 1:  # impossible while we hold the lock; refuse rather than guess
            raise RuntimeError(f"payment {payment.pk} changed under its lock")
        order_mark_paid(
            order=order, actor=f"provider:{provider_id}",
            data={"external_id": notice.external_id, "amount": str(notice.amount)},
        )
        order_fulfil(order=order)
        return _event_settle(event, PaymentEventOutcome.ACCEPTED)


def _event_reject(event: PaymentEvent, code: str) -> CallbackOutcome:
    event.outcome = PaymentEventOutcome.REJECTED
    event.reason_code = code
    event.save(update_fields=["outcome", "reason_code", "payment"])
    logger.warning("%s notice %s rejected: %s", event.provider, event.external_id, code)
    return CallbackOutcome(accepted=False, code=code)


def _event_settle(event: PaymentEvent, outcome: str) -> CallbackOutcome:
    event.outcome = outcome
    event.save(update_fields=["outcome", "payment"])
    return CallbackOutcome(accepted=True)


def sandbox_payment_submit(*, reference: str) -> Payment:
    """The buyer pressed Pay on the sandbox page: the gateway will notify the
    shop from the worker (server to server), re-sending until it answers
    ``success``. Paying twice sends the same trade again (a duplicate)."""
    payment = Payment.objects.get(reference=reference, provider="sandbox")
    django_rq.get_queue("default").enqueue(
        "payments.jobs.sandbox_notify_send",
        reference,
        job_id=f"sandbox-notify-{reference}",
        retry=Retry(max=len(SANDBOX_NOTIFY_RETRIES), interval=SANDBOX_NOTIFY_RETRIES),
    )
    return payment
