"""What buyers leave behind: key reveals and reports, sign-in links and back-in-stock requests."""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shop.models.catalogue import Product
from shop.models.orders import Order


class KeyReveal(models.Model):
    """A buyer pressed "Show key": dispute evidence (when, from where, which browser)."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="key_reveals")
    card_key = models.ForeignKey("inventory.CardKey", on_delete=models.PROTECT, related_name="reveals")
    at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["order", "at"], name="keyreveal_order_at_idx")]

    def __str__(self):
        return f"key #{self.card_key_id} shown on {self.order_id} @ {self.at:%Y-%m-%d %H:%M:%S}"


class KeyReportStatus(models.TextChoices):
    REPLACED = "REPLACED", _("Replaced automatically")
    OPEN = "OPEN", _("Waiting for staff")
    RESOLVED = "RESOLVED", _("Resolved by staff")


class KeyReport(models.Model):
    """The buyer said a key does not work."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="key_reports")
    card_key = models.ForeignKey("inventory.CardKey", on_delete=models.PROTECT, related_name="reports")
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=KeyReportStatus.choices)
    replacement_key = models.ForeignKey("inventory.CardKey", on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="+")
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=KeyReportStatus.values), name="keyreport_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="keyreport_status_idx")]

    def __str__(self):
        return f"report on key #{self.card_key_id} ({self.order_id})"


class LookupLink(models.Model):
    """A one-time sign-in link to an order page, sent by email. The link holds
    this row's id signed with SECRET_KEY (nothing secret is stored);
    ``used_at`` makes it one-time, ``expires_at`` short-lived."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lookup_links")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"lookup link for {self.order_id}"


# --- buyers' back-in-stock requests and email sign-in (helper C) ------------------

class StockAlertRequest(models.Model):
    """"Email me when it is back": one buyer's request for one sold-out
    product, emailed once (``notified_at``) in the language they asked in.
    The unsubscribe link holds this row's id signed with SECRET_KEY, so
    nothing secret is stored."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="stock_alerts")
    email = models.EmailField(max_length=254, help_text="Stored lower-case.")
    language = models.CharField(max_length=10, blank=True, help_text="The buyer's language when they asked.")
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("back-in-stock request")
        verbose_name_plural = _("back-in-stock requests")
        constraints = [
            # One waiting request per buyer and product: asking twice changes nothing.
            models.UniqueConstraint(fields=["product", "email"],
                                    condition=Q(notified_at__isnull=True, unsubscribed_at__isnull=True),
                                    name="stockalert_one_waiting_per_email"),
            models.CheckConstraint(condition=Q(email=Lower("email")), name="stockalert_email_lower"),
        ]
        indexes = [
            # The job's question: who waits for this product? Small: only waiting rows.
            models.Index(fields=["product", "id"], condition=Q(notified_at__isnull=True, unsubscribed_at__isnull=True),
                         name="stockalert_waiting_idx"),
        ]

    def __str__(self):
        return f"{self.email} waits for {self.product_id}"


class SignInLink(models.Model):
    """A one-time, short-lived link that signs this browser in to every order
    of one email ("all my orders"). Like LookupLink, the link holds this row's
    id signed with SECRET_KEY; ``used_at`` makes it one-time."""

    email = models.EmailField(max_length=254, help_text="Stored lower-case.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["email", "created_at"], name="signinlink_email_idx")]

    def __str__(self):
        return f"sign-in link for {self.email}"
