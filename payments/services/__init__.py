"""Payments: checkout, the notice inbox and the paid path, refunds, reconciliation."""

from payments.services.checkout import (
    CheckoutStarted,
    OrderNotPayable,
    PaymentStartFailed,
    checkout_start_payment,
    payment_open,
)
from payments.services.inbox import (
    payment_callback_handle,
    payment_notice_receive,
    payment_notices_apply,
    payment_notices_apply_overdue,
    payment_notices_drain,
)
from payments.services.notice_paths import CallbackOutcome
from payments.services.reconcile import ReconcileResult, payments_reconcile
from payments.services.refunds import RefundError, payment_refund, refund_buyer_notify
from payments.services.sandbox import sandbox_payment_submit

__all__ = [
    "CallbackOutcome", "CheckoutStarted", "OrderNotPayable", "PaymentStartFailed", "payment_open", "ReconcileResult",
    "RefundError", "checkout_start_payment", "payment_callback_handle", "payment_notice_receive",
    "payment_notices_apply", "payment_notices_apply_overdue", "payment_notices_drain", "payment_refund",
    "payments_reconcile", "refund_buyer_notify", "sandbox_payment_submit",
]
