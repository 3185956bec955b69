"""The sandbox gateway's pay button: the trade is booked and the gateway
notifies the shop from the worker, as a real gateway's servers would."""

from __future__ import annotations

import django_rq
from rq import Retry

from payments.models import Payment
from payments.providers.sandbox import NotifyMode, sandbox_paid_amount, sandbox_trade_record

# Seconds between the sandbox gateway's notify attempts (a real gateway's back-off, shortened).
SANDBOX_NOTIFY_RETRIES = [1, 2, 5, 10, 30, 60]


def sandbox_payment_submit(*, reference: str, mode: str = NotifyMode.NORMAL) -> Payment:
    """The buyer pressed Pay on the sandbox page: the gateway books the trade
    and will notify the shop from the worker (server to server), re-sending
    until it answers ``success``. Paying twice sends the same trade again (a
    duplicate). ``mode`` makes the gateway misbehave (see NotifyMode)."""
    if mode not in NotifyMode.VALUES:
        mode = NotifyMode.NORMAL
    payment = Payment.objects.get(reference=reference, provider="sandbox")
    sandbox_trade_record(
        reference=reference, amount=sandbox_paid_amount(amount=payment.amount, mode=mode), currency=payment.currency
    )
    if mode == NotifyMode.LOST:
        return payment
    django_rq.get_queue("default").enqueue(
        "payments.jobs.sandbox_notify_send",
        reference,
        mode,
        job_id=f"sandbox-notify-{reference}",
        retry=Retry(max=len(SANDBOX_NOTIFY_RETRIES), interval=SANDBOX_NOTIFY_RETRIES),
    )
    return payment
