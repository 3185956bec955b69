"""Orders: Order, OrderLine and the append-only OrderEvent, with their statuses and event types."""

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shop.models.catalogue import Coupon, Product


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "PENDING_PAYMENT", _("Awaiting payment")
    PAID = "PAID", _("Paid")
    IN_REVIEW = "IN_REVIEW", _("Being checked")
    AWAITING_STOCK = "AWAITING_STOCK", _("Paid, waiting for stock")
    # A manual product's paid order, in the staff's fulfilment queue.
    PREPARING = "PREPARING", _("Being prepared by the shop")
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
    # A manual product's order in the staff's queue: when it should be delivered by.
    fulfil_due_at = models.DateTimeField(null=True, blank=True)
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
    MANUAL_QUEUED = "MANUAL_QUEUED", _("Being prepared by the shop")
    MANUAL_DELIVERED = "MANUAL_DELIVERED", _("Prepared by the shop")
    ANSWERS_VIEWED = "ANSWERS_VIEWED", _("The buyer's answers were opened by staff")


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
