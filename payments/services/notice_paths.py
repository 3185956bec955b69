"""The exception paths of the paid path: what happens to a notice that is
not an ordinary credit (``paid_path.notice_route`` decides which path a
notice takes). Each applies one stored, locked notice inside the batch's
transaction and records its outcome on the notice.

Money is never dropped: a payment for a refunded or already-paid order is
recorded, flagged on the order and raised to the owner; one below the price
is rejected and raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus, Refund, RefundStatus
from payments.providers.base import CallbackNotice, NoticeKind
from payments.services.refunds import refund_email_enqueue
from riskctl.models import RiskEventKind
from riskctl.services import risk_event_for_order
from shop.models import Order, OrderStatus
from shop.services import REFUNDABLE_STATUSES, order_refund_begin, order_refund_complete
from shop.services.events import (
    event_dispute_opened,
    event_payment_extra,
    event_payment_odd,
    event_payment_rejected,
    events_save,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackOutcome:
    accepted: bool
    code: str = ""
    duplicate: bool = False


def event_reject(event: PaymentEvent, code: str) -> CallbackOutcome:
    event.outcome = PaymentEventOutcome.REJECTED
    event.reason_code = code
    event.save(update_fields=["outcome", "reason_code", "payment"])
    logger.warning("%s notice %s rejected: %s", event.provider, event.external_id, code)
    return CallbackOutcome(accepted=False, code=code)


def event_settle(event: PaymentEvent, outcome: str, code: str = "") -> CallbackOutcome:
    event.outcome = outcome
    event.reason_code = code or event.reason_code
    event.save(update_fields=["outcome", "reason_code", "payment"])
    return CallbackOutcome(accepted=True, code=event.reason_code)


def facts_of(notice: CallbackNotice) -> dict:
    """What the timeline and the alerts say of a payment notice."""
    return {"external_id": notice.payment_id, "amount": str(notice.amount), "currency": notice.currency}


def notice_declined(*, event: PaymentEvent, payment: Payment, **_) -> CallbackOutcome:
    """A declined or failed attempt: card testers leave many of these."""
    risk_event_for_order(kind=RiskEventKind.PAYMENT_FAILED, order_id=payment.order_id)
    return event_settle(event, PaymentEventOutcome.IGNORED)


def notice_ignored(*, event: PaymentEvent, code: str, **_) -> CallbackOutcome:
    """The same transaction reported again under another notice id (a second
    Stripe event, a reconciliation query): already applied."""
    return event_settle(event, PaymentEventOutcome.IGNORED, code)


def notice_unknown(*, event: PaymentEvent, code: str, **_) -> CallbackOutcome:
    return event_reject(event, code)


def payment_refuse(*, event: PaymentEvent, order: Order, code: str, notice: CallbackNotice,
                   payment: Payment, **_) -> CallbackOutcome:
    """An authentic payment that does not match its order: recorded, flagged, raised; nothing else."""
    actor = f"provider:{event.provider}"
    data = facts_of(notice)
    if code != "TRANSACTION_REUSED":
        data["expected"] = f"{payment.amount} {payment.currency}"
    events_save(event_payment_rejected(order, actor=actor, code=code, facts=data))
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"payment-rejected:{event.provider}:{event.external_id}",
        subject=f"Payment for order {order.order_no} rejected: {code}",
        body=f"{event.provider} reported {data.get('amount')} {data.get('currency')} (trade {data.get('external_id')}); "
             f"expected {data.get('expected', '?')}. The order was not paid. The buyer's money is at the provider: "
             "refund it there, or ask the buyer to pay the rest.",
    )
    return event_reject(event, code)


def payment_flag_extra(*, event: PaymentEvent, order: Order, code: str, notice: CallbackNotice,
                       **_) -> CallbackOutcome:
    """Money for an order we no longer deliver (refunded), or paid a second
    time under another transaction id: kept on record for a refund, flagged,
    the owner told to give it back. Never dropped."""
    actor = f"provider:{event.provider}"
    data = facts_of(notice)
    if code == "ORDER_REFUNDED":
        events_save(event_payment_odd(order, actor=actor, reason=code, facts=data))
    else:
        events_save(event_payment_extra(order, actor=actor, facts=data))
    logger.warning("order %s: extra payment %s (%s)", order.order_no, data.get("external_id"), code)
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"payment-extra:{event.provider}:{event.external_id}",
        subject=f"Extra payment for order {order.order_no} ({code}): refund due",
        body=f"{event.provider} trade {data.get('external_id')} paid {data.get('amount')} {data.get('currency')} "
             f"for order {order.order_no}, which is {order.status}. Nothing more was delivered; "
             "refund this payment at the provider.",
    )
    return event_settle(event, PaymentEventOutcome.EXTRA, code)


def refund_notice_apply(*, event: PaymentEvent, payment: Payment, order: Order, notice: CallbackNotice,
                        **_) -> CallbackOutcome:
    """The provider refunded the payment (e.g. from its dashboard)."""
    actor = f"provider:{event.provider}"
    full = notice.succeeded and notice.amount >= payment.amount
    if payment.status == PaymentStatus.REFUNDED or order.status == OrderStatus.REFUNDED:
        return event_settle(event, PaymentEventOutcome.REFUNDED, "ALREADY_REFUNDED")  # our own refund, reported back
    if payment.status == PaymentStatus.SUCCEEDED and full and order.status in REFUNDABLE_STATUSES:
        order_refund_begin(order=order, actor=actor, reason="refunded at the provider")
        refund = _refund_record(payment=payment, external_id=notice.external_id, actor=actor, order=order)
        transaction.on_commit(lambda refund_id=refund.pk: refund_email_enqueue(refund_id=refund_id), robust=True)
        return event_settle(event, PaymentEventOutcome.REFUNDED)
    # Refunded after the keys went out, or only in part, or before its
    # payment reached us (the payment, when it arrives, sees this notice and
    # delivers nothing): a person decides.
    if payment.status == PaymentStatus.CREATED:
        code = "REFUNDED_BEFORE_PAYMENT"
    else:
        code = "PARTIAL_REFUND" if not full else "REFUNDED_AFTER_DELIVERY"
    if full and payment.status == PaymentStatus.SUCCEEDED:
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(status=PaymentStatus.REFUNDED)
        payment.status = PaymentStatus.REFUNDED
    events_save(event_payment_odd(order, actor=actor, reason=code,
                                  facts={"amount": str(notice.amount), "external_id": notice.external_id}))
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"refund-odd:{event.provider}:{event.external_id}",
        subject=f"Order {order.order_no} refunded at {event.provider} while {order.status} ({code})",
        body=f"{notice.amount} {notice.currency} of payment {payment.reference} was refunded at the provider. "
             "The order's keys were not taken back: void them if the buyer should lose them.",
    )
    return event_settle(event, PaymentEventOutcome.REFUNDED, code)


def _refund_record(*, payment: Payment, external_id: str, actor: str, order: Order) -> Refund:
    """A refund made at the provider, in full: recorded, the payment and the
    order marked refunded. Call after ``order_refund_begin``."""
    refund = Refund.objects.create(
        payment=payment, amount=payment.amount, status=RefundStatus.SUCCEEDED, external_id=external_id[:80],
        actor=actor, reason="refunded at the provider", completed_at=timezone.now(),
    )
    Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(status=PaymentStatus.REFUNDED)
    payment.status = PaymentStatus.REFUNDED
    order_refund_complete(order=order, actor=actor, data={"refund": refund.pk, "amount": str(refund.amount)})
    return refund


def dispute_notice_apply(*, event: PaymentEvent, payment: Payment, order: Order, notice: CallbackNotice,
                         **_) -> CallbackOutcome:
    reason = str(notice.payload.get("reason", ""))[:100]
    events_save(event_dispute_opened(order, actor=f"provider:{event.provider}", external_id=notice.external_id,
                                     amount=notice.amount, reason=reason))
    owner_alert_raise(
        kind=AlertKind.DISPUTE, dedupe_key=f"dispute:{event.provider}:{event.external_id}",
        subject=f"Payment for order {order.order_no} disputed ({reason or 'no reason given'})",
        body=f"{notice.amount} {notice.currency} of payment {payment.reference} is disputed at {event.provider}. "
             "The order's timeline and its payment notices in admin are the evidence to submit.",
    )
    risk_event_for_order(kind=RiskEventKind.DISPUTE, order_id=order.pk, amount=notice.amount)
    return event_settle(event, PaymentEventOutcome.DISPUTED)


def earlier_refund_code(earlier: PaymentEvent) -> str:
    return "REFUNDED_BEFORE_PAYMENT" if earlier.kind == NoticeKind.REFUND else "DISPUTED_BEFORE_PAYMENT"


def earlier_refund_is_full(*, earlier: PaymentEvent, payment: Payment) -> bool:
    return earlier.kind == NoticeKind.REFUND and earlier.succeeded and earlier.amount >= payment.amount


def payment_after_refund_or_dispute(*, event: PaymentEvent, payment: Payment, order: Order, earlier: PaymentEvent,
                                    notice: CallbackNotice) -> None:
    """The money arrived (the order is PAID), but the provider had already
    reported it refunded or disputed: no key goes out. A full refund closes
    the order as refunded (the buyer has the money back); a dispute or a
    partial refund holds it for staff (the credit passes the hold to
    fulfilment: keys set aside, not shown). Call inside the paid transaction."""
    actor = f"provider:{event.provider}"
    code = earlier_refund_code(earlier)
    if earlier_refund_is_full(earlier=earlier, payment=payment):
        order_refund_begin(order=order, actor=actor, reason="refunded at the provider before its payment arrived")
        _refund_record(payment=payment, external_id=earlier.external_id, actor=actor, order=order)
        body = "The order was closed as refunded; no key went out."
    else:
        body = ("The order is held for review (Risk control → Review items): its keys are set aside, not shown. "
                "Approve only once the dispute or refund is settled.")
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"before-payment:{event.provider}:{event.external_id}",
        subject=f"Order {order.order_no}: its payment arrived after a {earlier.get_kind_display().lower()} ({code})",
        body=f"{event.provider} reported {earlier.get_kind_display().lower()} {earlier.external_id} "
             f"({earlier.amount} {earlier.currency}) before payment {notice.payment_id}. {body}",
    )


def payment_overpaid_flag(*, event: PaymentEvent, payment: Payment, order: Order, notice: CallbackNotice):
    """More than the price arrived: the order is delivered, the owner told;
    returns the timeline event."""
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"payment-odd:{order.order_no}:OVERPAID",
        subject=f"Order {order.order_no} was overpaid: {notice.amount} for {payment.amount} {payment.currency}",
        body=f"{event.provider} trade {notice.payment_id} paid {notice.amount} {notice.currency}; the price was "
             f"{payment.amount}. The order is delivered; refund the difference by hand if the buyer asks.",
    )
    return event_payment_odd(order, actor=f"provider:{event.provider}", reason="OVERPAID",
                             facts={**facts_of(notice), "expected": str(payment.amount)})
