"""Payments and the provider notifications that move them."""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class PaymentStatus(models.TextChoices):
    CREATED = "CREATED", "Created"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    REFUNDED = "REFUNDED", "Refunded"


class Payment(models.Model):
    order = models.ForeignKey("shop.Order", on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=20)
    # Our reference sent to the provider (its out_trade_no).
    reference = models.CharField(max_length=40, unique=True)
    status = models.CharField(max_length=10, choices=PaymentStatus.choices, default=PaymentStatus.CREATED)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # The provider's transaction id, known once it reports the payment.
    external_id = models.CharField(max_length=80, null=True, blank=True)
    # The provider's id of the checkout it opened (a Stripe Checkout Session),
    # kept so reconciliation can ask about it.
    checkout_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=Q(external_id__isnull=False),
                name="payment_unique_external_id",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.reference}"


class PaymentEventOutcome(models.TextChoices):
    RECEIVED = "RECEIVED", "Received: to be applied"
    ACCEPTED = "ACCEPTED", "Accepted: order paid"
    EXTRA = "EXTRA", "Accepted: order was already paid or refunded (refund due)"
    IGNORED = "IGNORED", "Acknowledged: not a success notice"
    REFUNDED = "REFUNDED", "Refunded by the provider"
    DISPUTED = "DISPUTED", "Disputed by the buyer"
    REJECTED = "REJECTED", "Rejected"


class PaymentEventKind(models.TextChoices):
    PAYMENT = "PAYMENT", "Payment"
    REFUND = "REFUND", "Refund"
    DISPUTE = "DISPUTE", "Dispute"


class PaymentEvent(models.Model):
    """A verified provider notification, recorded once per (provider, external id).

    The unique constraint is the idempotency key: a duplicate notify finds the
    row and is answered with the same reply, changing nothing.

    The notify endpoint stores the notice as RECEIVED and answers at once (the
    inbox); the applier turns RECEIVED notices into paid orders in batches.
    Everything the applier needs is on the row, so a notice is never held only
    in memory or in Redis.
    """

    provider = models.CharField(max_length=20)
    external_id = models.CharField(max_length=80)
    reference = models.CharField(max_length=40)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    kind = models.CharField(max_length=10, choices=PaymentEventKind.choices, default=PaymentEventKind.PAYMENT)
    # Whether the provider reports the payment as made (False: declined, failed).
    succeeded = models.BooleanField(default=True)
    # The provider's id of the payment itself, where it differs from the notice's id.
    transaction_id = models.CharField(max_length=80, blank=True)
    outcome = models.CharField(max_length=10, choices=PaymentEventOutcome.choices)
    reason_code = models.CharField(max_length=40, blank=True)
    # The parameters or body exactly as received (dispute evidence) and how
    # they were authenticated; a notice that fails verification is never stored.
    payload = models.JSONField(default=dict)
    verification = models.CharField(max_length=60, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    # A RECEIVED notice whose application failed waits until apply_after
    # (growing back-off) and is then tried again; the error is kept for staff.
    apply_attempts = models.PositiveSmallIntegerField(default=0)
    apply_after = models.DateTimeField(null=True, blank=True)
    apply_error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "external_id"], name="paymentevent_unique_external_id"),
        ]
        indexes = [
            # The applier's queue: small, whatever the size of the history.
            models.Index(fields=["id"], condition=Q(outcome="RECEIVED"), name="paymentevent_received_idx"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.external_id} {self.outcome}"


class RefundStatus(models.TextChoices):
    PENDING = "PENDING", "Asked of the provider"
    SUCCEEDED = "SUCCEEDED", "Refunded"
    MANUAL = "MANUAL", "To refund by hand (provider has no refund API)"
    FAILED = "FAILED", "Failed: refund by hand or retry"


class Refund(models.Model):
    """Money given back for a payment. One live (not FAILED) refund per payment."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=10, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    external_id = models.CharField(max_length=80, blank=True)
    actor = models.CharField(max_length=100)
    reason = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    buyer_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["payment"], condition=~Q(status="FAILED"), name="refund_one_live_per_payment"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=RefundStatus.values), name="refund_status_valid"),
        ]

    def __str__(self):
        return f"refund {self.amount} of {self.payment} ({self.status})"
