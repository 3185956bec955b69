"""Payments and the provider notifications that move them."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import cached_property


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
    # How the buyer is handed to the provider (a PayAction), kept so the pay
    # page can be shown again without asking the provider twice.
    pay_action = models.JSONField(default=dict, blank=True)
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

    @cached_property
    def subject(self) -> str:
        """What the buyer pays for, as a gateway shows it: the order's first
        product ("Membership · 90 days" for a variant), else the shop's name.
        The checkout sets it from the product it has read: no query there."""
        line = self.order.lines.select_related("product__parent").order_by("id").first()
        return str(line.product) if line else settings.SHOP_NAME


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
    # Query before credit: when the provider confirmed this notice (its trade
    # is paid with this amount). A notice of a method that asks first is not
    # applied until then.
    confirmed_at = models.DateTimeField(null=True, blank=True)

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


class MethodProvider(models.TextChoices):
    EPAY = "epay", "易支付 EPay (v1)"
    ALIPAY = "alipay", "Alipay open platform (支付宝)"
    WECHAT = "wechat", "WeChat Pay API v3 (微信支付)"
    EPUSDT = "epusdt", "USDT-TRC20 via epusdt"
    STRIPE = "stripe", "Stripe"


class MethodChannel(models.TextChoices):
    NONE = "", "(provider's default)"
    EPAY_ALIPAY = "alipay", "EPay · alipay"
    EPAY_WXPAY = "wxpay", "EPay · wxpay"
    EPAY_QQPAY = "qqpay", "EPay · qqpay"
    ALIPAY_F2F = "f2f", "Alipay 当面付 (QR)"
    ALIPAY_PAGE = "page", "Alipay 电脑网站支付 (page pay)"
    ALIPAY_WAP = "wap", "Alipay 手机网站支付 (wap pay)"
    WECHAT_NATIVE = "native", "WeChat Native (QR)"
    USDT_TRC20 = "trc20", "USDT-TRC20"
    CARD = "card", "Card (Stripe Checkout)"


class MethodIcon(models.TextChoices):
    ALIPAY = "alipay", "Alipay"
    WECHAT = "wechat", "WeChat"
    QQ = "qq", "QQ"
    USDT = "usdt", "USDT"
    CARD = "card", "Card"
    OTHER = "other", "Other"


class PaymentMethod(models.Model):
    """A way to pay offered at checkout: a provider plug-in plus its channel
    and merchant credentials. Several merchants of one provider live side by
    side, each under its own ``code`` (its notify URL is
    ``/payments/<code>/notify``).

    Credentials are sealed at rest (``credentials_sealed``, AES-256-GCM under
    the card keys' key ring, bound to this row's code) and never shown again
    in full; ``manage.py rotate_keys`` re-seals them.
    """

    code = models.SlugField(
        max_length=20, unique=True,
        help_text="The method's id: the API's provider field and the notify URL /payments/<id>/notify. "
                  "Do not change it while payments are open.",
    )
    provider = models.CharField(max_length=10, choices=MethodProvider.choices)
    channel = models.CharField(max_length=10, choices=MethodChannel.choices, blank=True)
    name = models.CharField(max_length=60, help_text="Shown to buyers (English).")
    name_zh = models.CharField(max_length=60, blank=True, help_text="Shown to buyers (Chinese); English if empty.")
    icon = models.CharField(max_length=10, choices=MethodIcon.choices, default=MethodIcon.OTHER)
    position = models.PositiveIntegerField(default=0, help_text="Lower comes first at checkout.")
    enabled = models.BooleanField(default=True)
    min_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                     help_text="Offered only for orders of at least this amount.")
    max_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True,
                                     help_text="Offered only for orders of at most this amount.")
    fee_percent = models.DecimalField(max_digits=5, decimal_places=2, default=0,
                                      help_text="Added to the order's amount when paying this way; negative: a discount.")
    fee_fixed = models.DecimalField(max_digits=12, decimal_places=2, default=0,
                                    help_text="A fixed fee (negative: a discount) added after the percentage.")
    products = models.ManyToManyField("shop.Product", blank=True, related_name="payment_methods",
                                      help_text="Only for these products; none: every product.")
    gateway_url = models.URLField(
        max_length=300, blank=True,
        help_text="EPay: the gateway's submit.php; Alipay: gateway.do; WeChat: the API base; epusdt: its base "
                  "URL; Stripe: empty. Empty: the provider's public default.",
    )
    merchant_id = models.CharField(max_length=64, blank=True,
                                   help_text="EPay pid, Alipay app_id, WeChat mchid.")
    app_id = models.CharField(max_length=64, blank=True, help_text="WeChat appid.")
    key_serial = models.CharField(max_length=64, blank=True, help_text="WeChat: the merchant certificate's serial.")
    platform_key_id = models.CharField(
        max_length=80, blank=True, help_text="WeChat: the platform public key id (PUB_KEY_ID_…) or certificate serial.")
    usdt_rate = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True,
                                    help_text="USDT: how much of the shop's currency one USDT is worth; empty: "
                                              "the gateway's rate.")
    query_before_credit = models.BooleanField(
        default=True,
        help_text="Before a notice pays an order, ask the provider whether that trade is paid with that amount.")
    credentials_sealed = models.BinaryField(default=b"", editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(provider__in=MethodProvider.values), name="method_provider_valid"),
            models.CheckConstraint(condition=Q(fee_percent__gt=-100, fee_percent__lt=100),
                                   name="method_fee_percent_range"),
            models.CheckConstraint(condition=Q(usdt_rate__isnull=True) | Q(usdt_rate__gt=0),
                                   name="method_usdt_rate_positive"),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"
