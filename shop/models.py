"""Catalogue and orders: Product, Order, OrderLine and the append-only OrderEvent."""

from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower, Upper
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


def _localised(obj, field: str) -> str:
    """The Chinese text when the active language is Chinese and it was filled in."""
    if (get_language() or "").lower().startswith("zh"):
        return getattr(obj, f"{field}_zh") or getattr(obj, field)
    return getattr(obj, field)


class Category(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=100)
    name_zh = models.CharField(max_length=100, blank=True, help_text="Chinese (Simplified) name.")
    position = models.PositiveIntegerField(default=0, help_text="Lower comes first.")

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    @property
    def display_name(self) -> str:
        return _localised_either(self, "name")[0]


class Product(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    name_zh = models.CharField(max_length=200, blank=True, help_text="Chinese (Simplified) name.")
    description = models.TextField(blank=True)
    description_zh = models.TextField(blank=True, help_text="Chinese (Simplified) description.")
    usage_notes = models.TextField(blank=True, help_text="How to redeem the key; shown with the key.")
    usage_notes_zh = models.TextField(blank=True, help_text="Chinese (Simplified) usage notes.")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, null=True, blank=True, related_name="products")
    auto_replacements_per_order = models.PositiveIntegerField(
        default=0, help_text="Keys a buyer may replace by themselves per order (report a problem); 0: staff decide.",
    )
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="CNY")
    active = models.BooleanField(default=True)
    max_per_order = models.PositiveIntegerField(default=10, help_text="Most keys one order may buy.")
    hold_minutes = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="How long checkout holds stock for an unpaid order of this product (a flash sale: a few "
                  "minutes); empty: ORDER_HOLD_MINUTES.")
    # Channels besides the order page (which every order gets).
    deliver_by_email = models.BooleanField(default=True, help_text="Email the keys to the buyer.")
    deliver_by_sms = models.BooleanField(default=True, help_text="Text the keys when the buyer gives a phone number.")
    # The picture as stored (shop.images): scaled to at most 1200 px and named
    # by its content's hash, so it is cached for a year; the card's thumbnail
    # beside it. Empty: the page draws a tile with the name's initial.
    image = models.ImageField(
        upload_to="products/", blank=True, max_length=200, width_field="image_width", height_field="image_height",
        help_text="JPEG, PNG, WebP or GIF, up to 8 MB; stored as WebP, at most 1200 px on its longest side, "
                  "with a 480×360 thumbnail for the catalogue.")
    image_width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    image_height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    image_thumb = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=Decimal("0.01")), name="product_price_positive"),
            models.CheckConstraint(condition=Q(max_per_order__gte=1), name="product_max_per_order_positive"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="product_currency_iso"),
        ]

    def __str__(self):
        return self.name

    # Shown in the buyer's language; when that side is empty, the other one
    # (an owner who writes only Chinese still reaches English buyers).
    @property
    def display_name(self) -> str:
        return _localised_either(self, "name")[0]

    @property
    def display_description(self) -> str:
        return _localised_either(self, "description")[0]

    @property
    def display_usage_notes(self) -> str:
        return _localised_either(self, "usage_notes")[0]

    @property
    def initial(self) -> str:
        """The placeholder tile's letter when there is no picture."""
        return (self.display_name.strip()[:1] or "?").upper()

    @property
    def tint(self) -> int:
        """The placeholder tile's colour: one of site.css's .tint-0 to .tint-5."""
        return (self.pk or 0) % 6

    @property
    def thumb_url(self) -> str:
        return f"{settings.MEDIA_URL}{self.image_thumb}" if self.image_thumb else ""


class QuantityTier(models.Model):
    """Wholesale price: from ``min_quantity`` keys on, ``percent_off`` off the unit price."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="tiers")
    min_quantity = models.PositiveIntegerField()
    percent_off = models.DecimalField(max_digits=5, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "min_quantity"], name="tier_product_min_quantity_unique"),
            models.CheckConstraint(condition=Q(min_quantity__gte=2), name="tier_min_quantity_at_least_two"),
            models.CheckConstraint(condition=Q(percent_off__gt=0, percent_off__lt=100), name="tier_percent_off_range"),
        ]

    def __str__(self):
        return f"{self.product_id}: {self.min_quantity}+ at {self.percent_off}% off"


class CouponKind(models.TextChoices):
    PERCENT = "PERCENT", "Percentage off"
    FIXED = "FIXED", "Fixed amount off"


class Coupon(models.Model):
    code = models.CharField(max_length=40, unique=True, help_text="Stored upper-case; buyers may type any case.")
    kind = models.CharField(max_length=10, choices=CouponKind.choices)
    value = models.DecimalField(max_digits=12, decimal_places=2, help_text="Percent (1-100) or an amount off the order.")
    products = models.ManyToManyField(Product, blank=True, related_name="coupons",
                                      help_text="Only these products; none: every product.")
    usage_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Orders it may be used on; empty: no limit.")
    used_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(value__gt=0), name="coupon_value_positive"),
            models.CheckConstraint(condition=~Q(kind="PERCENT") | Q(value__lte=100), name="coupon_percent_at_most_100"),
            models.CheckConstraint(condition=Q(usage_limit__isnull=True) | Q(used_count__lte=F("usage_limit")),
                                   name="coupon_used_within_limit"),
            models.CheckConstraint(condition=Q(code=Upper("code")), name="coupon_code_upper"),
        ]

    def __str__(self):
        return self.code


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "PENDING_PAYMENT", _("Awaiting payment")
    PAID = "PAID", _("Paid")
    IN_REVIEW = "IN_REVIEW", _("Being checked")
    AWAITING_STOCK = "AWAITING_STOCK", _("Paid, waiting for stock")
    FULFILLING = "FULFILLING", _("Delivering")
    DELIVERED = "DELIVERED", _("Delivered")
    EXPIRED = "EXPIRED", _("Expired (not paid)")
    REFUNDED = "REFUNDED", _("Refunded")


class Order(models.Model):
    # Orders whose keys the buyer may see: the inbox delivery was written.
    KEYS_VISIBLE = (OrderStatus.FULFILLING, OrderStatus.DELIVERED)

    order_no = models.CharField(max_length=20, unique=True)
    # SHA-256 of the buyer's access token; the token itself is shown once.
    token_hash = models.CharField(max_length=64)
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING_PAYMENT)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    hold_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Optional secret for the lookup page, hashed with Django's password hashers.
    query_password_hash = models.CharField(max_length=128, blank=True)
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, null=True, blank=True, related_name="orders")
    coupon_code = models.CharField(max_length=40, blank=True)
    discount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"),
                                   help_text="Tier and coupon discounts together.")
    language = models.CharField(max_length=10, blank=True, help_text="The buyer's language at checkout.")
    # Who placed it, as the cap on live unpaid orders counts buyers: the email
    # with its aliases folded away, and the first-party device id.
    buyer_email = models.CharField(max_length=254, blank=True)
    buyer_device = models.CharField(max_length=64, blank=True)
    # Carried by every signed order link (and session grant): staff bump it to
    # revoke them all at once (shop.services.order_links).
    link_version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=OrderStatus.values), name="order_status_valid"),
            models.CheckConstraint(
                condition=Q(status=OrderStatus.PENDING_PAYMENT) | Q(status=OrderStatus.EXPIRED) | Q(paid_at__isnull=False),
                name="order_paid_at_when_paid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "hold_expires_at"], name="order_status_hold_idx"),
            models.Index(fields=["email"], name="order_email_idx"),
            # The unpaid-orders cap: small, since only live unpaid orders are in them.
            models.Index(fields=["client_ip"], condition=Q(status="PENDING_PAYMENT"), name="order_unpaid_ip_idx"),
            models.Index(fields=["buyer_email"], condition=Q(status="PENDING_PAYMENT"),
                         name="order_unpaid_email_idx"),
            models.Index(fields=["buyer_device"], condition=Q(status="PENDING_PAYMENT") & ~Q(buyer_device=""),
                         name="order_unpaid_device_idx"),
        ]

    def __str__(self):
        return self.order_no

    @property
    def keys_visible(self) -> bool:
        return self.status in self.KEYS_VISIBLE


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    # list price × quantity − discount = amount
    discount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    amount = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="orderline_quantity_positive"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="orderline_amount_not_negative"),
        ]

    def __str__(self):
        return f"{self.quantity} × {self.product_id} ({self.order_id})"


class OrderEventType(models.TextChoices):
    CREATED = "CREATED", _("Order placed")
    PAID = "PAID", _("Payment received")
    PAYMENT_EXTRA = "PAYMENT_EXTRA", _("An extra payment arrived (to refund)")
    KEYS_RESERVED = "KEYS_RESERVED", _("Keys set aside")
    AWAITING_STOCK = "AWAITING_STOCK", _("Waiting for stock")
    DELIVERY_SENT = "DELIVERY_SENT", _("Delivered")
    DELIVERY_FAILED = "DELIVERY_FAILED", _("Delivery failed")
    DELIVERED = "DELIVERED", _("Everything delivered")
    EXPIRED = "EXPIRED", _("Expired unpaid")
    STOCK_FILLED = "STOCK_FILLED", _("Stock arrived for this order")
    KEYS_RELEASED = "KEYS_RELEASED", _("Keys returned to stock")
    KEY_REPLACED = "KEY_REPLACED", _("Key replaced")
    KEY_REPORTED = "KEY_REPORTED", _("Problem with a key reported")
    RESEND_REQUESTED = "RESEND_REQUESTED", _("Resend requested")
    PAYMENT_REJECTED = "PAYMENT_REJECTED", _("A payment notice was rejected")
    PAYMENT_ODD = "PAYMENT_ODD", _("An unusual payment needs staff attention")
    REFUND_REQUESTED = "REFUND_REQUESTED", _("Refund started")
    REFUNDED = "REFUNDED", _("Refunded")
    DISPUTE_OPENED = "DISPUTE_OPENED", _("Payment disputed")
    REVIEW_OPENED = "REVIEW_OPENED", _("Held for review")
    REVIEW_APPROVED = "REVIEW_APPROVED", _("Review approved")
    REVIEW_REJECTED = "REVIEW_REJECTED", _("Review rejected")
    MANUAL_COMPLETION = "MANUAL_COMPLETION", _("Payment confirmed by the shop")
    LINKS_REVOKED = "LINKS_REVOKED", _("Order links revoked")


class OrderEvent(models.Model):
    """One step of an order: the buyer's timeline and the staff's audit trail.

    Append-only: a database trigger (migration 0002) refuses UPDATE and DELETE.
    """

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=32, choices=OrderEventType.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=100)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["order", "at"], name="orderevent_order_at_idx")]

    def __str__(self):
        # Shown as the row title of the admin's timeline: in the shop's time zone, like the column beside it.
        return f"{self.order_id} {self.type} @ {timezone.localtime(self.at):%Y-%m-%d %H:%M:%S}"


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


class LocalisedText(NamedTuple):
    text: str
    lang: str  # of ``text``: "en" or "zh-Hans"


def _localised_either(obj, field: str) -> LocalisedText:
    """``_localised``, and the other language's text when the buyer's side is
    empty (an owner who writes only Chinese still reaches English buyers),
    with the language code of the text returned so the page can mark it."""
    text = _localised(obj, field)
    zh = (get_language() or "").lower().startswith("zh")
    if text:
        return LocalisedText(text, "zh-Hans" if zh and getattr(obj, f"{field}_zh") else "en")
    return LocalisedText(getattr(obj, f"{field}_zh"), "zh-Hans")


QQ_VALIDATOR = RegexValidator(r"^[0-9]{5,12}$", _("A QQ number is 5 to 12 digits."))
TELEGRAM_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_]{5,32}$", _("A Telegram username is 5 to 32 letters, digits or underscores (without the @)."))
# WeChat's own rule (6-20, a letter first, then letters, digits, _ or -), or
# the QQ or phone number older accounts use as their ID.
WECHAT_VALIDATOR = RegexValidator(
    r"^([A-Za-z][-_A-Za-z0-9]{5,19}|[0-9]{5,15})$",
    _("A WeChat ID is 6 to 20 letters, digits, _ or -, starting with a letter (or the number the account uses)."))


class ShopProfile(models.Model):
    """The shop's one row of buyer-facing settings: the notice (公告) and the
    ways to reach the owner. Read through ``shop.profile.shop_profile``
    (cached), written in the admin."""

    # One row, always id 1: the database refuses a second.
    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    notice_on = models.BooleanField(_("show the notice"), default=False)
    notice = models.TextField(_("notice (English)"), blank=True,
                              help_text=_("Plain text; line breaks are kept. Shown under the header of every page."))
    notice_zh = models.TextField(_("notice (Chinese)"), blank=True, help_text=_("Chinese (Simplified) notice."))
    notice_until = models.DateField(_("show until"), null=True, blank=True,
                                    help_text=_("Last day the notice shows (the shop's time zone); empty: no end."))
    contact_email = models.EmailField(_("email"), blank=True, help_text=_("Where buyers write to you."))
    contact_qq = models.CharField(_("QQ number"), max_length=12, blank=True, validators=[QQ_VALIDATOR])
    wechat_id = models.CharField(_("WeChat ID"), max_length=20, blank=True, validators=[WECHAT_VALIDATOR])
    wechat_qr = models.ImageField(_("WeChat QR code"), upload_to="profile/", blank=True,
                                  help_text=_("An image of your WeChat QR code; scaled down to 600 px."))
    telegram = models.CharField(_("Telegram username"), max_length=32, blank=True, validators=[TELEGRAM_VALIDATOR],
                                help_text=_("Without the @; buyers get a t.me link."))
    support_hours = models.CharField(_("support hours (English)"), max_length=200, blank=True,
                                     help_text=_("For example: Every day, 9:00-22:00 (Beijing time)."))
    support_hours_zh = models.CharField(_("support hours (Chinese)"), max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("shop profile")
        verbose_name_plural = _("shop profile")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="shopprofile_singleton")]

    def __str__(self):
        return str(_("Notice and contact"))


class FaqEntry(models.Model):
    """One question on /faq/, in English and Chinese; either side may be
    empty, and the page falls back to the other."""

    question = models.CharField(_("question (English)"), max_length=300, blank=True)
    question_zh = models.CharField(_("question (Chinese)"), max_length=300, blank=True)
    answer = models.TextField(_("answer (English)"), blank=True, help_text=_("Plain text; line breaks and links "
                                                                            "(https://…) are kept."))
    answer_zh = models.TextField(_("answer (Chinese)"), blank=True)
    position = models.PositiveIntegerField(_("position"), default=0, help_text=_("Lower comes first."))
    active = models.BooleanField(_("shown"), default=True)

    class Meta:
        verbose_name = _("FAQ entry")
        verbose_name_plural = _("FAQ")
        constraints = [
            models.CheckConstraint(condition=~Q(question="") | ~Q(question_zh=""), name="faqentry_has_question",
                                   violation_error_message=_("Write the question in English, Chinese or both.")),
            models.CheckConstraint(condition=~Q(answer="") | ~Q(answer_zh=""), name="faqentry_has_answer",
                                   violation_error_message=_("Write the answer in English, Chinese or both.")),
        ]

    def __str__(self):
        return self.question or self.question_zh

    @property
    def display_question(self) -> LocalisedText:
        return _localised_either(self, "question")

    @property
    def display_answer(self) -> LocalisedText:
        return _localised_either(self, "answer")


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
