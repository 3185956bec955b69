"""Risk control: block/allow lists, the buyer event log features are computed
from, editable rules and thresholds, purchase limits, stored assessments and
the human review queue."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ListType(models.TextChoices):
    BLOCK = "BLOCK", "Block list"
    ALLOW = "ALLOW", "Allow list"


class IdentifierKind(models.TextChoices):
    EMAIL = "EMAIL", "Email"
    EMAIL_DOMAIN = "EMAIL_DOMAIN", "Email domain (wildcards: *.example.com)"
    IP = "IP", "IP address or CIDR range"
    DEVICE = "DEVICE", "Device"
    PHONE = "PHONE", "Phone"


class ListEntry(models.Model):
    list_type = models.CharField(max_length=5, choices=ListType.choices, default=ListType.BLOCK)
    kind = models.CharField(max_length=12, choices=IdentifierKind.choices)
    # Normalised: emails as ``email_normalise`` makes them, IPs/CIDRs canonical,
    # domains lower-case (a leading ``*.`` matches every subdomain).
    value = models.CharField(max_length=254)
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "block and allow list entries"
        constraints = [
            models.UniqueConstraint(fields=["list_type", "kind", "value"], name="listentry_unique"),
            models.CheckConstraint(condition=Q(kind__in=IdentifierKind.values), name="listentry_kind_valid"),
            models.CheckConstraint(condition=Q(list_type__in=ListType.values), name="listentry_type_valid"),
        ]

    def __str__(self):
        return f"{self.get_list_type_display()}: {self.get_kind_display()} {self.value}"


class RiskEventKind(models.TextChoices):
    ORDER_CREATED = "ORDER_CREATED", _("Order placed")
    ORDER_PAID = "ORDER_PAID", _("Order paid")
    PAYMENT_FAILED = "PAYMENT_FAILED", _("Payment failed")
    DELIVERED = "DELIVERED", _("Order delivered")
    REFUNDED = "REFUNDED", _("Order refunded")
    DISPUTE = "DISPUTE", _("Payment disputed")
    RESEND = "RESEND", _("Resend requested")
    KEY_REPORTED = "KEY_REPORTED", _("Key reported not working")


class RiskEvent(models.Model):
    """What a buyer (by email, IP, device, phone) did: the history velocity,
    linked-account and trust features are computed from. Written by the
    higher apps through ``risk_event_record``."""

    kind = models.CharField(max_length=16, choices=RiskEventKind.choices)
    at = models.DateTimeField(default=timezone.now)
    order_id = models.BigIntegerField(null=True, blank=True)
    product_id = models.BigIntegerField(null=True, blank=True)
    quantity = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    email = models.CharField(max_length=254, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    device = models.CharField(max_length=80, blank=True)
    phone = models.CharField(max_length=32, blank=True)

    class Meta:
        # Partial: an identifier a buyer did not give ('') links nobody. A full
        # index would count every such event under '', and the planner, not
        # knowing a buyer's identifier when it plans the batch feature query,
        # would expect each of them to match every buyer and scan the table.
        indexes = [
            models.Index(fields=["email", "at"], name="riskevent_email_given_idx", condition=~Q(email="")),
            models.Index(fields=["ip", "at"], name="riskevent_ip_given_idx", condition=~Q(ip="")),
            models.Index(fields=["device", "at"], name="riskevent_device_given_idx", condition=~Q(device="")),
            models.Index(fields=["phone", "at"], name="riskevent_phone_given_idx", condition=~Q(phone="")),
            models.Index(fields=["order_id"], name="riskevent_order_idx"),
        ]

    def __str__(self):
        return f"{self.kind} {self.email or self.ip} @ {self.at:%Y-%m-%d %H:%M}"


class RuleAction(models.TextChoices):
    SCORE = "SCORE", "Add points to the score"
    REVIEW = "REVIEW", "Send to review (hard rule)"
    BLOCK = "BLOCK", "Block (hard rule)"


class RuleOperator(models.TextChoices):
    GTE = ">=", "at least"
    LTE = "<=", "at most"
    EQ = "==", "equal to"


class Rule(models.Model):
    """``feature <op> threshold`` → points, or a hard decision. Shadow rules
    are evaluated and logged with the assessment but change nothing."""

    code = models.SlugField(max_length=60, unique=True)
    description = models.CharField(max_length=200)
    feature = models.CharField(max_length=60)
    operator = models.CharField(max_length=2, choices=RuleOperator.choices, default=RuleOperator.GTE)
    threshold = models.DecimalField(max_digits=12, decimal_places=2)
    action = models.CharField(max_length=6, choices=RuleAction.choices, default=RuleAction.SCORE)
    points = models.IntegerField(default=0, help_text="Added to the score when it matches (may be negative).")
    active = models.BooleanField(default=True)
    shadow = models.BooleanField(default=False, help_text="Evaluate and log, but do not act.")
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(action__in=RuleAction.values), name="rule_action_valid"),
            models.CheckConstraint(condition=Q(operator__in=RuleOperator.values), name="rule_operator_valid"),
        ]

    def __str__(self):
        return f"{self.code} v{self.version}"


class Thresholds(models.Model):
    """Score thresholds: ALLOW < review_at ≤ REVIEW < block_at ≤ BLOCK. The row
    without a product is the global one; a product's row overrides it."""

    product = models.OneToOneField("shop.Product", on_delete=models.CASCADE, null=True, blank=True,
                                   related_name="risk_thresholds")
    review_at = models.PositiveIntegerField(default=50)
    block_at = models.PositiveIntegerField(default=80)

    class Meta:
        verbose_name_plural = "thresholds"
        constraints = [
            models.CheckConstraint(condition=Q(review_at__lt=models.F("block_at")), name="thresholds_ordered"),
            models.CheckConstraint(condition=Q(block_at__lte=100), name="thresholds_within_100"),
            models.UniqueConstraint(fields=["product"], condition=Q(product__isnull=True),
                                    name="thresholds_one_global", nulls_distinct=False),
        ]

    def __str__(self):
        return f"review ≥ {self.review_at}, block ≥ {self.block_at} ({self.product_id or 'global'})"


class PurchaseLimit(models.Model):
    """限购: at most ``max_quantity`` keys of a product per identifier per period."""

    class Per(models.TextChoices):
        EMAIL = "EMAIL", "email"
        DEVICE = "DEVICE", "device"
        PHONE = "PHONE", "phone"
        IP = "IP", "IP address"

    product = models.ForeignKey("shop.Product", on_delete=models.CASCADE, related_name="purchase_limits")
    per = models.CharField(max_length=6, choices=Per.choices)
    max_quantity = models.PositiveIntegerField()
    period_hours = models.PositiveIntegerField(default=24)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "per"], name="purchaselimit_unique"),
            models.CheckConstraint(condition=Q(max_quantity__gte=1), name="purchaselimit_positive"),
        ]

    def __str__(self):
        return f"{self.max_quantity} per {self.per} per {self.period_hours} h"


class Decision(models.TextChoices):
    ALLOW = "ALLOW", "Allow"
    REVIEW = "REVIEW", "Review"
    BLOCK = "BLOCK", "Block"


class Assessment(models.Model):
    """One risk decision, kept as evidence: the score, the reasons, the rule
    versions and every identifier it was made on."""

    class Stage(models.TextChoices):
        CHECKOUT = "CHECKOUT", "Checkout"
        PAYMENT = "PAYMENT", "Payment"

    ref = models.CharField(max_length=12, unique=True)
    stage = models.CharField(max_length=8, choices=Stage.choices)
    order = models.ForeignKey("shop.Order", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="risk_assessments")
    product_id = models.BigIntegerField(null=True, blank=True)
    decision = models.CharField(max_length=6, choices=Decision.choices)
    score = models.PositiveIntegerField()
    reasons = models.JSONField(default=list)  # [{"rule", "points", "detail"}], strongest first
    shadow = models.JSONField(default=list)  # shadow rules that matched
    rule_versions = models.JSONField(default=dict)
    features = models.JSONField(default=dict)
    email = models.CharField(max_length=254, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    device = models.CharField(max_length=80, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    quantity = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["order", "created_at"], name="assessment_order_idx")]

    def __str__(self):
        return f"{self.ref} {self.decision} ({self.score})"


class ReviewItem(models.Model):
    """An order held for a human: approve (deliver) or reject (refund)."""

    class Outcome(models.TextChoices):
        APPROVED = "APPROVED", _("Approved")
        REJECTED = "REJECTED", _("Rejected")

    order = models.OneToOneField("shop.Order", on_delete=models.PROTECT, related_name="review")
    assessment = models.ForeignKey(Assessment, on_delete=models.PROTECT, related_name="reviews")
    opened_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome="", decided_at__isnull=True) | Q(outcome__in=["APPROVED", "REJECTED"],
                                                                       decided_at__isnull=False),
                name="reviewitem_decided_consistently",
            ),
        ]
        indexes = [models.Index(fields=["decided_at", "opened_at"], name="reviewitem_queue_idx")]

    def __str__(self):
        return gettext("Review: order %(no)s") % {"no": self.order.order_no}
