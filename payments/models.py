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
    ACCEPTED = "ACCEPTED", "Accepted: order paid"
    EXTRA = "EXTRA", "Accepted: order was already paid (refund due)"
    IGNORED = "IGNORED", "Acknowledged: not a success notice"
    REJECTED = "REJECTED", "Rejected"


class PaymentEvent(models.Model):
    """A verified provider notification, recorded once per (provider, external id).

    The unique constraint is the idempotency key: a duplicate notify finds the
    row and is answered with the same reply, changing nothing.
    """

    provider = models.CharField(max_length=20)
    external_id = models.CharField(max_length=80)
    reference = models.CharField(max_length=40)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    outcome = models.CharField(max_length=10, choices=PaymentEventOutcome.choices)
    reason_code = models.CharField(max_length=40, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "external_id"], name="paymentevent_unique_external_id"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.external_id} {self.outcome}"
