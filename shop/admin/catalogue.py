"""The catalogue: products (with quantity tiers and the image), categories and coupons."""

from typing import ClassVar

from django import forms
from django.contrib import admin
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from inventory.models import CardKey, CardKeyStatus
from shop.admin.manual import ManualFieldInline
from shop.images import image_check as product_image_check
from shop.images import product_image_apply
from shop.models import Category, Coupon, Product, ProductKind, QuantityTier
from shop.services import coupon_code_normalise, product_variants_sync


class QuantityTierInline(admin.TabularInline):
    model = QuantityTier
    extra = 0


class VariantInline(admin.TabularInline):
    """The options of a product (30, 90 or 365 days): each a product of its
    own for stock, keys, limits and tiers (its change link), named and priced
    here; category, currency, hold time and delivery come from the product."""

    model = Product
    fk_name = "parent"
    fields = ("name", "name_zh", "price", "kind", "sales_cap", "max_per_order", "active", "available_keys")
    readonly_fields = ("available_keys",)
    extra = 0
    show_change_link = True
    verbose_name = _("variant")
    verbose_name_plural = _("variants: the options buyers choose from (a product with variants sells only "
                            "through them; give each its keys on its own page)")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            available_keys=Count("card_keys", filter=Q(card_keys__status=CardKeyStatus.AVAILABLE))).order_by(
            "price", "id")

    @admin.display(description=_("available keys"))
    def available_keys(self, obj):
        return getattr(obj, "available_keys", 0)


class ProductAdminForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = "__all__"

    def clean_image(self):
        """Refuse what shop.images would refuse (too big, too many pixels, not
        a picture Pillow reads), with its sentence, before anything is saved."""
        image = self.cleaned_data.get("image")
        if isinstance(image, UploadedFile):
            image.seek(0)
            product_image_check(data=image.read())
            image.seek(0)
        return image

    def clean(self):
        cleaned = super().clean()
        kind, cap = cleaned.get("kind"), cleaned.get("sales_cap")
        if cap is not None and kind != ProductKind.REUSABLE:
            self.add_error("sales_cap", _("A sales cap is for reusable keys only."))
        # The kind decides what a sold key is (the key itself or a copy of
        # it): once a key was sold, changing it would change past sales.
        if (self.instance.pk and "kind" in self.changed_data
                and CardKey.objects.filter(product_id=self.instance.pk, order_line__isnull=False).exists()):
            self.add_error("kind", _("Keys of this product were sold: its kind can no longer change. "
                                     "Create a new product instead."))
        return cleaned


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    inlines = (QuantityTierInline, ManualFieldInline, VariantInline)
    list_display = ("name", "name_zh", "slug", "parent", "category", "kind", "price", "currency", "active",
                    "max_per_order", "available_keys")
    list_filter = ("active", "kind", "category", ("parent", admin.EmptyFieldListFilter))
    search_fields = ("name", "name_zh", "slug", "parent__name")
    list_select_related = ("category", "parent")
    prepopulated_fields: ClassVar[dict] = {"slug": ("name",)}
    readonly_fields = ("available_keys", "image_preview", "variant_of")
    fieldsets = (
        (_("Basics"), {"fields": ("name", "slug", "variant_of", "category", "price", "currency", "active",
                                  "available_keys")}),
        (_("Keys"), {
            "fields": ("kind", "sales_cap", "fulfil_within_minutes"),
            "description": _("Unique: each key is sold once. Reusable: every buyer gets the same key (or one of "
                             "the few in stock), e.g. a shared account; a cap limits how many sales in all. "
                             "Manual: no keys; the buyer fills in the fields below and staff deliver by hand "
                             "from the manual fulfilment queue, within the minutes set here."),
        }),
        (_("Content in English"), {
            "fields": ("description", "usage_notes"),
            "description": _("Markdown: **bold**, *italic*, lists, [links](https://…), ### headings. "
                             "An empty field shows the Chinese text."),
        }),
        (_("Content in Chinese"), {
            "fields": ("name_zh", "description_zh", "usage_notes_zh"),
            "description": _("Shown to buyers who read Chinese; an empty field shows the English text."),
        }),
        (_("Image"), {"fields": ("image", "image_preview")}),
        (_("Delivery"), {"fields": ("deliver_by_email", "deliver_by_sms", "auto_replacements_per_order")}),
        (_("Limits"), {"fields": ("max_per_order", "hold_minutes")}),
    )

    @admin.display(description=_("preview"))
    def image_preview(self, obj):
        if not obj or not obj.image_thumb:
            return _("No image: the shop shows a tile with the name's first letter.")
        return format_html('<img src="{}" alt="" width="240" height="180" class="product-thumb">', obj.thumb_url)

    @admin.display(description=_("variant of"))
    def variant_of(self, obj):
        if obj is None or obj.parent_id is None:
            return _("— (add variants at the bottom of this page to sell options of this product)")
        return format_html('<a href="{}">{}</a>', reverse("admin:shop_product_change", args=[obj.parent_id]),
                           obj.parent.name)

    def get_inlines(self, request, obj):
        # One level: a variant has tiers and keys of its own, not variants.
        return (QuantityTierInline, ManualFieldInline) if obj is not None and obj.parent_id else self.inlines

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        product_variants_sync(product=form.instance)

    def save_model(self, request, obj, form, change):
        # The upload is stored scaled and under its hash (shop.images), never
        # as it came; clearing the image clears the thumbnail with it.
        image = form.cleaned_data.get("image")
        if "image" in form.changed_data and isinstance(image, UploadedFile):
            image.seek(0)
            product_image_apply(product=obj, data=image.read())
        elif not obj.image:
            obj.image_thumb = ""
        super().save_model(request, obj, form, change)

    def get_queryset(self, request):
        # One aggregated query for the whole page, not a count per row.
        return (
            super()
            .get_queryset(request)
            .annotate(available_keys=Count("card_keys", filter=Q(card_keys__status=CardKeyStatus.AVAILABLE)))
        )

    @admin.display(description="available keys", ordering="available_keys")
    def available_keys(self, obj):
        # Absent on an unsaved product (the add form).
        return getattr(obj, "available_keys", 0)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "name_zh", "slug", "position")
    prepopulated_fields: ClassVar[dict] = {"slug": ("name",)}


class CouponForm(forms.ModelForm):
    class Meta:
        model = Coupon
        fields = "__all__"

    def clean_code(self):
        # In clean_code, not save_model: the form's constraint check (unique,
        # coupon_code_upper) runs on the cleaned value, before any save.
        return coupon_code_normalise(self.cleaned_data["code"])


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    form = CouponForm
    list_display = ("code", "kind", "value", "used_count", "usage_limit", "expires_at", "active")
    list_filter = ("active", "kind")
    search_fields = ("code",)
    filter_horizontal = ("products",)
    readonly_fields = ("used_count",)  # counted by checkout, race-free
