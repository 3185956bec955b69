"""The catalogue: Category, Product, its QuantityTier prices and Coupon."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.text import slugify

from shop.models.localised import _localised_either


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


class ProductKind(models.TextChoices):
    # Each key is sold once (game cards, licence keys).
    UNIQUE = "unique", "Unique keys: each key sold once"
    # The same key (or one of a few) handed to every buyer: a shared account,
    # a download code. Each sale is a copy of it on the buyer's order line.
    REUSABLE = "reusable", "Reusable keys: every buyer gets the same key"
    # No keys (代充): the buyer fills in the fields the owner defines (a game
    # account, a server), staff deliver by hand from the fulfilment queue.
    MANUAL = "manual", "Manual: staff deliver by hand"


# How long staff have to deliver a manual order when its product does not say.
MANUAL_FULFIL_MINUTES_DEFAULT = 60


class Product(models.Model):
    """A product for sale; or, with ``parent`` set, a variant of one (30, 90 or
    365 days): a product of its own for checkout, holds, the claim, limits,
    tiers and keys, listed only under its parent, whose page offers the choice.
    A product with variants sells only through them."""

    slug = models.SlugField(max_length=80, unique=True)
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="variants",
        help_text="Set on a variant: the product it is an option of (one level only).")
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
    kind = models.CharField(max_length=10, choices=ProductKind.choices, default=ProductKind.UNIQUE)
    sales_cap = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Reusable keys: how many sales in all (each key handed over counts); empty: no limit.")
    fulfil_within_minutes = models.PositiveIntegerField(
        default=MANUAL_FULFIL_MINUTES_DEFAULT,
        help_text="Manual products: minutes staff have to deliver a paid order (the queue's timer).")
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
            models.CheckConstraint(condition=Q(kind__in=ProductKind.values), name="product_kind_valid"),
            models.CheckConstraint(condition=Q(sales_cap__isnull=True) | Q(kind=ProductKind.REUSABLE),
                                   name="product_sales_cap_reusable_only"),
            models.CheckConstraint(condition=~Q(parent=F("pk")), name="product_not_own_variant"),
        ]

    def __str__(self):
        return f"{self.parent.name} · {self.name}" if self.parent_id else self.name

    def clean(self):
        super().clean()
        if self.parent_id is None:
            return
        if self.parent.parent_id is not None:
            raise ValidationError({"parent": "A variant cannot have variants: choose a product without a parent."})
        if self.pk and self.variants.exists():
            raise ValidationError({"parent": "This product has variants of its own, so it cannot be a variant."})

    def save(self, *args, **kwargs):
        if self.parent_id and not self.slug:
            self.slug = variant_slug_new(parent=self.parent, name=self.name)
        super().save(*args, **kwargs)

    # Shown in the buyer's language; when that side is empty, the other one
    # (an owner who writes only Chinese still reaches English buyers). A
    # variant is named after its product ("Game Card · 90 days") and, where
    # it has none of its own, shows its product's description and usage notes.
    @property
    def display_name(self) -> str:
        own = _localised_either(self, "name")[0]
        return f"{self.parent.display_name} · {own}" if self.parent_id else own

    @property
    def variant_name(self) -> str:
        """A variant's own name ("90 days"), in the buyer's language."""
        return _localised_either(self, "name")[0]

    @property
    def display_description(self) -> str:
        own = _localised_either(self, "description")[0]
        return own or (self.parent.display_description if self.parent_id else "")

    @property
    def display_usage_notes(self) -> str:
        own = _localised_either(self, "usage_notes")[0]
        return own or (self.parent.display_usage_notes if self.parent_id else "")

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


# What a variant takes from its product each time the product is saved in the
# admin: it is sold, shown and delivered like its product.
VARIANT_INHERITED = ("category_id", "currency", "hold_minutes", "deliver_by_email", "deliver_by_sms",
                     "auto_replacements_per_order")


def variant_slug_new(*, parent: Product, name: str) -> str:
    """A free slug for a new variant: its product's, then its name's."""
    base = f"{parent.slug}-{slugify(name)[:30] or 'option'}"[:74].rstrip("-")
    slug, n = base, 1
    while Product.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


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
