"""One Delivery per (order, channel): the outbox the worker drains."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Channel(models.TextChoices):
    INBOX = "INBOX", "Order page"
    EMAIL = "EMAIL", "Email"
    SMS = "SMS", "SMS"


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    SENT = "SENT", "Sent"
    FAILED = "FAILED", "Failed"


class Delivery(models.Model):
    order = models.ForeignKey("shop.Order", on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipient = models.CharField(max_length=254, blank=True)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The claim of a worker that is sending right now (a lease): set by a
    # conditional UPDATE before the send, cleared after it. Two runs of the
    # same job cannot both send while it is fresh; a SIGKILLed sender's lease
    # lapses after DELIVERY_SEND_LEASE_SECONDS and the delivery can be sent again.
    sending_started_at = models.DateTimeField(null=True, blank=True)
    # How many times staff or the buyer asked for this delivery again: part of
    # the idempotency key, so a deliberate resend is a new message to providers.
    resends = models.PositiveIntegerField(default=0)
    # The batch send job this delivery was last enqueued in ("" if none): the
    # sweeper leaves a delivery alone while that job is queued or running.
    batch_job_id = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["order", "channel"], name="delivery_unique_per_channel"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"),
            models.CheckConstraint(
                condition=Q(status=DeliveryStatus.SENT, sent_at__isnull=False) | ~Q(status=DeliveryStatus.SENT),
                name="delivery_sent_has_time",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="delivery_status_idx")]

    def __str__(self):
        return f"{self.order_id} {self.channel} {self.status}"

    @property
    def job_id(self) -> str:
        """Deterministic RQ job id: a re-enqueue replaces, never doubles, the job."""
        return f"delivery-{self.pk}"

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of one send, new for each deliberate resend."""
        return f"kamidrop-delivery-{self.pk}-{self.resends}"


class AttemptOutcome(models.TextChoices):
    # Still STARTED after the send should have ended: the sender died mid-send
    # (the message may or may not have gone out).
    STARTED = "STARTED", "Started (no result recorded)"
    SENT = "SENT", "Sent"
    RETRY = "RETRY", "Failed, will retry"
    REJECTED = "REJECTED", "Rejected for good"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: written before the send, completed after it."""

    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="attempt_log")
    number = models.PositiveIntegerField()
    resend = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=AttemptOutcome.choices, default=AttemptOutcome.STARTED)
    error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # How long the send took; for a send in a batch, how long the batch's sending took.
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "resend", "number"], name="deliveryattempt_unique_number"),
            models.CheckConstraint(condition=Q(outcome__in=AttemptOutcome.values), name="deliveryattempt_outcome_valid"),
        ]

    def __str__(self):
        return f"{self.delivery_id} #{self.number} {self.outcome}"


class SweepRun(models.Model):
    """The sweeper's last run (one row per sweeper name): for /healthz and staff."""

    name = models.CharField(max_length=40, unique=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"{self.name} @ {self.started_at:%Y-%m-%d %H:%M:%S}"


class Lease(models.Model):
    """Leadership of a single-runner job (the sweeper) among processes on any
    number of machines: whoever holds the row until ``expires_at`` leads.

    A row, not a session-level advisory lock: behind PgBouncer's transaction
    pooling a session lock stays on whichever server connection the statement
    happened to use, where the next statement may not run and another client
    may inherit it. Taken and renewed by one statement on the database's clock
    (``delivery.services.leases``); a holder that dies without releasing it
    stops leading when it expires.
    """

    name = models.CharField(max_length=40, primary_key=True)
    holder = models.CharField(max_length=200)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class AlertKind(models.TextChoices):
    LOW_STOCK = "LOW_STOCK", "Low stock"
    DEAD_LETTER = "DEAD_LETTER", "Delivery failed for good"
    PAYMENT_ODD = "PAYMENT_ODD", "Late or odd payment"
    DISPUTE = "DISPUTE", "Payment dispute"
    REVIEW = "REVIEW", "Order held for review"
    SWEEPER = "SWEEPER", "Sweeper anomaly"
    AWAITING_STOCK = "AWAITING_STOCK", "Paid orders waiting for stock"
    KEY_GUESSING = "KEY_GUESSING", "Someone is guessing keys"
    RISK_BLOCK = "RISK_BLOCK", "Checkouts blocked by risk rules"
    ADMIN_LOCKOUT = "ADMIN_LOCKOUT", "Admin login locked out"
    KEY_REPORT = "KEY_REPORT", "Buyer reported a bad key"
    MANUAL_QUEUE = "MANUAL_QUEUE", "Manual order waiting for staff"
    MANUAL_OVERDUE = "MANUAL_OVERDUE", "Manual order overdue"


class OwnerAlert(models.Model):
    """Something the shop owner should know. One row per incident: raising the
    same ``dedupe_key`` again within the window only counts an occurrence,
    until the owner acknowledges the row (then a recurrence is a new row)."""

    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    dedupe_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Over OWNER_ALERT_RATE_PER_HOUR for its kind: kept in the admin, not sent.
    suppressed = models.BooleanField(default=False)
    # The notification channels (email, webhook, telegram) it reached: a retry
    # of the send job skips them.
    sent_channels = models.JSONField(default=list, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["dedupe_key", "created_at"], name="owneralert_key_idx")]
        constraints = [
            # Whoever acknowledged, it happened at a time (the user may be deleted later).
            models.CheckConstraint(
                condition=Q(acknowledged_by__isnull=True) | Q(acknowledged_at__isnull=False),
                name="owneralert_ack_has_time",
            ),
        ]

    def __str__(self):
        return f"{self.kind}: {self.subject}"


class WebhookEvent(models.TextChoices):
    ORDER_PAID = "order.paid", "Order paid"
    ORDER_DELIVERED = "order.delivered", "Order delivered"
    ORDER_REFUNDED = "order.refunded", "Order refunded"
    PRODUCT_LOW_STOCK = "product.low_stock", "Product low on stock"


class WebhookEndpoint(models.Model):
    """A merchant's URL that hears about orders and stock, signed with ``secret``."""

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Shared secret: X-Kamidrop-Signature is an HMAC-SHA256 with it.")
    events = models.JSONField(default=list, blank=True, help_text='Event names, e.g. ["order.paid"]; empty: all.')
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.url

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    SENT = "SENT", "Sent"
    FAILED = "FAILED", "Failed"


class WebhookDelivery(models.Model):
    """One event for one endpoint: the log the admin shows, and the job's state."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=WebhookDeliveryStatus.values), name="webhookdelivery_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="webhookdelivery_status_idx")]

    def __str__(self):
        return f"{self.event} → {self.endpoint_id} ({self.status})"

    @property
    def job_id(self) -> str:
        return f"webhook-{self.pk}"
