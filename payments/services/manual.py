"""补单: the owner completes an unpaid (or expired) order against the
provider's trade number, when the notify never came.

Where the provider can be asked (EPay's api.php, Alipay trade.query, WeChat's
order query, epusdt's status, Stripe), it is: a trade it reports as paid for
one of the order's payments, under that trade number, goes into the same
notice inbox as a notify and takes the same paid path (idempotency, amount
check, risk check, timeline). A 补单 the provider cannot confirm needs a
second, explicit confirmation with a reason; it is marked unverified and the
owner is alerted. Every 补单 is in the order's timeline with who and why.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from payments.methods import methods_all, provider_for
from payments.models import Payment, PaymentStatus
from payments.providers.base import CallbackNotice, PaymentProvider, ProviderUnreachable
from payments.services.inbox import payment_callback_handle
from shop.models import Order, OrderStatus
from shop.services.events import event_manual_completion, events_save

logger = logging.getLogger(__name__)

UNPAID = (OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED)


class ManualCompletionRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ManualCompletionUnverified(Exception):
    """The provider could not confirm the trade: completing it needs a second
    confirmation with a reason (``unverified_ok=True``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ManualCompletion:
    order_no: str
    verified: bool
    accepted: bool  # the paid path took it (False: refused, e.g. the amount does not match)
    code: str  # the paid path's reason code, or the reason it was unverified
    duplicate: bool = False


def _method(method_id: str) -> PaymentProvider:
    """The method's plug-in, even if it is switched off for buyers now: the
    money arrived while it was on."""
    for config in methods_all():
        if config.id == method_id:
            return provider_for(config)
    raise ManualCompletionRefused("METHOD_UNKNOWN", f"No payment method {method_id!r}.")


def _provider_confirms(*, provider: PaymentProvider, payments: list[Payment],
                       trade_no: str) -> tuple[CallbackNotice | None, str]:
    """Ask the provider about each of the order's open payments of this
    method: the paid trade under ``trade_no``, or why it could not be confirmed."""
    if not provider.can_query:
        return None, f"{provider.config.provider} cannot be asked about a trade"
    why = "the provider does not report this order as paid"
    for payment in payments:
        try:
            answer = provider.query(payment=payment)
        except ProviderUnreachable as exc:
            why = f"the provider did not answer ({exc.code})"
            continue
        if answer is None or not answer.succeeded:
            continue
        if trade_no not in (answer.payment_id, answer.external_id):
            why = f"the provider reports trade {answer.payment_id}, not {trade_no}"
            continue
        return answer, ""
    return None, why


def payment_manual_complete(*, order_id: int, method_id: str, trade_no: str, actor: str, reason: str = "",
                            amount: Decimal | None = None, unverified_ok: bool = False) -> ManualCompletion:
    """补单. Network calls (the provider's query): call outside any transaction.

    Raises ManualCompletionRefused (the order is not unpaid, no such method,
    no trade number), or ManualCompletionUnverified when the provider cannot
    confirm and ``unverified_ok`` is not given (with a reason)."""
    trade_no = (trade_no or "").strip()
    reason = (reason or "").strip()
    if not trade_no or len(trade_no) > 64:
        raise ManualCompletionRefused("TRADE_NO_INVALID", "Enter the provider's trade number (up to 64 characters).")
    order = Order.objects.get(pk=order_id)
    if order.status not in UNPAID:
        raise ManualCompletionRefused("ORDER_NOT_UNPAID", f"Order {order.order_no} is {order.status}, not unpaid.")
    provider = _method(method_id)
    payments = list(order.payments.filter(provider=provider.id, status=PaymentStatus.CREATED).order_by("-id"))
    notice, why = _provider_confirms(provider=provider, payments=payments, trade_no=trade_no) if payments else (
        None, "the order has no payment with this method")
    if notice is not None:
        notice = CallbackNotice(**{**notice.__dict__, "verification": f"补单 by {actor}: {notice.verification}"[:60]})
        events_save(event_manual_completion(order, actor=actor, method=provider.id, trade_no=trade_no, verified=True,
                                            reason=reason))
        outcome = payment_callback_handle(provider_id=provider.id, notice=notice)
        logger.warning("补单 of %s by %s: %s trade %s confirmed by the provider", order.order_no, actor, provider.id,
                       trade_no)
        return ManualCompletion(order_no=order.order_no, verified=True, accepted=outcome.accepted,
                                code=outcome.code, duplicate=outcome.duplicate)

    if not unverified_ok:
        raise ManualCompletionUnverified("UNVERIFIED", f"The provider could not confirm trade {trade_no}: {why}.")
    if not reason:
        raise ManualCompletionRefused("REASON_REQUIRED", "An unverified 补单 needs a reason (what proof you saw).")
    with transaction.atomic():
        payment = payments[0] if payments else Payment.objects.create(
            order=order, provider=provider.id, reference=f"{order.order_no}-{secrets.token_hex(3).upper()}",
            amount=provider.config.amount_for(order.amount), currency=order.currency)
        events_save(event_manual_completion(order, actor=actor, method=provider.id, trade_no=trade_no, verified=False,
                                            why_unverified=why, reason=reason))
    notice = CallbackNotice(
        external_id=trade_no, transaction_id=trade_no, reference=payment.reference,
        amount=amount if amount is not None else payment.amount, currency=payment.currency, succeeded=True,
        payload={"manual": True, "actor": actor, "reason": reason[:300], "why_unverified": why},
        verification=f"UNVERIFIED 补单 by {actor}"[:60],
    )
    outcome = payment_callback_handle(provider_id=provider.id, notice=notice)
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"manual-unverified:{order.order_no}:{trade_no}",
        subject=f"Order {order.order_no} completed by hand without the provider's confirmation",
        body=f"{actor} completed order {order.order_no} against {provider.id} trade {trade_no} "
             f"({notice.amount} {notice.currency}). The provider could not confirm it: {why}. Reason given: "
             f"{reason[:300]}. Check the trade in the merchant panel.",
    )
    logger.warning("unverified 补单 of %s by %s: %s trade %s (%s)", order.order_no, actor, provider.id, trade_no, why)
    return ManualCompletion(order_no=order.order_no, verified=False, accepted=outcome.accepted, code=outcome.code,
                            duplicate=outcome.duplicate)
