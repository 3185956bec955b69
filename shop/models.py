"""Catalogue and orders: Product, Order, OrderLine and the append-only OrderEvent."""

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Product(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="CNY")
    active = models.BooleanField(default=True)
    max_per_order = models.PositiveIntegerField(default=10, help_text="Most keys one order may buy.")
    # Channels besides the order page (which every order gets).
    deliver_by_email = models.BooleanField(default=True, help_text="Email the keys to the buyer.")
    deliver_by_sms = models.BooleanField(default=True, help_text="Text the keys when the buyer gives a phone number.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=Decimal("0.01")), name="product_price_positive"),
            models.CheckConstraint(condition=Q(max_per_order__gte=1), name="product_max_per_order_positive"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="product_currency_iso"),
        ]

    def __str__(self):
        return self.name


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "PENDING_PAYMENT", "Awaiting payment"
    PAID = "PAID", "Paid"
    IN_REVIEW = "IN_REVIEW", "Being checked"
    AWAITING_STOCK = "AWAITING_STOCK", "Paid, waiting for stock"
    FULFILLING = "FULFILLING", "Delivering"
    DELIVERED = "DELIVERED", "Delivered"
    EXPIRED = "EXPIRED", "Expired (not paid)"
    REFUNDED = "REFUNDED", "Refunded"


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
    amount = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="orderline_quantity_positive"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="orderline_amount_not_negative"),
        ]

    def __str__(self):
        return f"{self.quantity} × {self.product_id} ({self.order_id})"


class OrderEventType(models.TextChoices):
    CREATED = "CREATED", "Order placed"
    PAID = "PAID", "Payment received"
    PAYMENT_EXTRA = "PAYMENT_EXTRA", "An extra payment arrived (to refund)"
    KEYS_RESERVED = "KEYS_RESERVED", "Keys set aside"
    AWAITING_STOCK = "AWAITING_STOCK", "Waiting for stock"
    DELIVERY_SENT = "DELIVERY_SENT", "Delivered"
    DELIVERY_FAILED = "DELIVERY_FAILED", "Delivery failed"
    DELIVERED = "DELIVERED", "Everything delivered"
    EXPIRED = "EXPIRED", "Expired unpaid"
    STOCK_FILLED = "STOCK_FILLED", "Stock arrived for this order"
    KEYS_RELEASED = "KEYS_RELEASED", "Keys returned to stock"
    KEY_REPLACED = "KEY_REPLACED", "Key replaced"
    RESEND_REQUESTED = "RESEND_REQUESTED", "Resend requested"
    PAYMENT_REJECTED = "PAYMENT_REJECTED", "A payment notice was rejected"
    PAYMENT_ODD = "PAYMENT_ODD", "An unusual payment needs staff attention"
    REFUND_REQUESTED = "REFUND_REQUESTED", "Refund started"
    REFUNDED = "REFUNDED", "Refunded"
    DISPUTE_OPENED = "DISPUTE_OPENED", "Payment disputed"
    REVIEW_OPENED = "REVIEW_OPENED", "Held for review"
    REVIEW_APPROVED = "REVIEW_APPROVED", "Review approved"
    REVIEW_REJECTED = "REVIEW_REJECTED", "Review rejected"


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
        return f"{self.order_id} {self.type} @ {self.at:%Y-%m-%d %H:%M:%S}"
