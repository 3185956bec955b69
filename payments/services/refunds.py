"""Refunds through the provider: review rejections, orders that waited too
long for stock, staff decisions.

Three steps, because the provider call is a network call that must not run
inside a transaction or under a row lock:

1. one transaction locks Payment → Order, moves the order to REFUNDED (so
   nothing can deliver it any more), releases its reserved keys and writes a
   PENDING ``Refund``;
2. the provider refunds (sandbox: at once; Stripe: the SDK; EPay v1: nothing
   to call, the owner is told what to do by hand);
3. a second transaction records the result; the buyer's email is queued after
   it commits. A failed provider call leaves the refund FAILED and raises an
   owner alert; calling ``payment_refund`` again retries it.
"""

from __future__ import annotations

import logging

import django_rq
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from rq import Retry

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from payments.methods import ProviderUnknown, provider_get
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.providers.base import RefundFailed, RefundResult
from shop.models import Order, OrderStatus
from shop.project.locks import order_lock, payments_lock
from shop.services import order_refund_begin, order_refund_complete
from shop.services.events import event_payment_odd, events_save

logger = logging.getLogger(__name__)


class RefundError(Exception):
    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code


def payment_refund(*, order: Order, actor: str, reason: str) -> Refund:
    """Refund ``order``'s payment in full and take the order back.

    Allowed from PAID, IN_REVIEW and AWAITING_STOCK (raises
    ``OrderTransitionError`` otherwise), or again for a REFUNDED order whose
    last provider refund FAILED. Returns the Refund: SUCCEEDED, MANUAL (the
    owner has been told how) or FAILED (the owner has been alerted).
    """
    with transaction.atomic():
        payment = next(iter(payments_lock(Payment.objects.filter(order_id=order.pk, status=PaymentStatus.SUCCEEDED))),
                       None)
        locked = order_lock(id=order.pk)
        if payment is None:
            raise RefundError("PAYMENT_NOT_FOUND", f"order {locked.order_no} has no payment to refund")
        retry = locked.status == OrderStatus.REFUNDED
        if retry and payment.refunds.exclude(status=RefundStatus.FAILED).exists():
            raise RefundError("ALREADY_REFUNDED", f"order {locked.order_no} is already refunded")
        if not retry:
            order_refund_begin(order=locked, actor=actor, reason=reason)
        refund = Refund.objects.create(payment=payment, amount=payment.amount, actor=actor, reason=reason[:500])

    try:
        result = provider_get(payment.provider).refund(payment=payment, amount=refund.amount)
    except (RefundFailed, ProviderUnknown) as exc:
        code = getattr(exc, "code", "REFUND_FAILED")
        return _refund_failed(refund=refund, order=locked, actor=actor, code=code, message=str(exc))

    with transaction.atomic():
        payments_lock(Payment.objects.filter(pk=payment.pk))
        locked = order_lock(id=order.pk)
        status = RefundStatus.MANUAL if result.status == RefundResult.MANUAL else RefundStatus.SUCCEEDED
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=status, external_id=result.external_id[:80], completed_at=timezone.now()
        )
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(status=PaymentStatus.REFUNDED)
        order_refund_complete(
            order=locked, actor=actor,
            data={"refund": refund.pk, "amount": str(refund.amount), "manual": status == RefundStatus.MANUAL},
        )
        if status == RefundStatus.MANUAL:
            owner_alert_raise(
                kind=AlertKind.PAYMENT_ODD, dedupe_key=f"refund-manual:{refund.pk}",
                subject=f"Refund order {locked.order_no} by hand at {payment.provider}",
                body=result.instructions,
            )
        transaction.on_commit(lambda refund_id=refund.pk: refund_email_enqueue(refund_id=refund_id), robust=True)
    refund.refresh_from_db()
    logger.info("order %s refunded (%s) by %s", locked.order_no, refund.status, actor)
    return refund


def _refund_failed(*, refund: Refund, order: Order, actor: str, code: str, message: str) -> Refund:
    with transaction.atomic():
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=RefundStatus.FAILED, error=f"{code}: {message}"[:500], completed_at=timezone.now()
        )
        events_save(event_payment_odd(order, actor=actor, reason="REFUND_FAILED",
                                      facts={"code": code, "refund": refund.pk}))
        owner_alert_raise(
            kind=AlertKind.PAYMENT_ODD, dedupe_key=f"refund-failed:{refund.pk}",
            subject=f"Refund of order {order.order_no} failed ({code})",
            body=f"The provider did not refund {refund.amount} of order {order.order_no}: {message[:300]}. "
                 "The order is taken back and its keys are in stock; refund by hand at the provider, or run the "
                 "Refund action again to retry.",
        )
    logger.warning("refund %s of order %s failed: %s", refund.pk, order.order_no, code)
    refund.refresh_from_db()
    return refund


def refund_buyer_notify(*, refund_id: int) -> bool:
    """Email the buyer that their money is on its way back (once). Runs in a
    job, outside any transaction. False if there was nothing to send."""
    refund = Refund.objects.select_related("payment__order").get(pk=refund_id)
    if refund.buyer_notified_at is not None or refund.status not in (RefundStatus.SUCCEEDED, RefundStatus.MANUAL):
        return False
    order = refund.payment.order
    context = {"order": order, "refund": refund, "shop_name": settings.SHOP_NAME,
               "manual": refund.status == RefundStatus.MANUAL}
    send_mail(
        subject=render_to_string("payments/refund_email_subject.txt", context).strip(),
        message=render_to_string("payments/refund_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[order.email],
    )
    Refund.objects.filter(pk=refund_id, buyer_notified_at__isnull=True).update(buyer_notified_at=timezone.now())
    return True


def refund_email_enqueue(*, refund_id: int) -> None:
    """Queue the buyer's refund email. A network call: after commit only."""
    django_rq.get_queue("default").enqueue(
        "payments.jobs.refund_email_send", refund_id, job_id=f"refund-email-{refund_id}",
        retry=Retry(max=5, interval=[10, 60, 300, 900, 3600]),
    )
