"""Payments: checkout, the provider callback (the paid flow), refunds, reconciliation."""

from payments.services.callbacks import (
    CallbackOutcome,
    payment_callback_handle,
    payment_notice_receive,
    payment_notices_apply,
    payment_notices_apply_overdue,
    payment_notices_drain,
    sandbox_payment_submit,
)
from payments.services.checkout import (
    CheckoutStarted,
    OrderNotPayable,
    PaymentStartFailed,
    checkout_start_payment,
    payment_open,
)
from payments.services.reconcile import ReconcileResult, payments_reconcile
from payments.services.refunds import RefundError, payment_refund, refund_buyer_notify

__all__ = [
    "CallbackOutcome", "CheckoutStarted", "OrderNotPayable", "PaymentStartFailed", "payment_open", "ReconcileResult", "RefundError", "checkout_start_payment",
    "payment_callback_handle", "payment_notice_receive", "payment_notices_apply", "payment_notices_apply_overdue",
    "payment_notices_drain", "payment_refund", "payments_reconcile", "refund_buyer_notify",
    "sandbox_payment_submit",
]
