"""Admin for payments, provider notices and refunds: read-only, the services write them.

Each PaymentEvent shows the notice exactly as received, how it was
authenticated and what the shop did with it: the evidence for a dispute.
"""

import json

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from payments.methods import methods_forget
from payments.models import Payment, PaymentEvent, PaymentMethod, Refund
from payments.providers.http import rsa_private_key_load, rsa_public_key_load
from payments.services.doctor import payments_doctor
from payments.services.methods import SECRET_FIELDS, credentials_masked, payment_method_save
from shop.admin.readonly import ReadOnlyAdminMixin


class PaymentEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PaymentEvent
    fields = ("external_id", "kind", "outcome", "reason_code", "amount", "currency", "verification", "received_at")
    extra = 0
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("received_at", "id")


class RefundInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Refund
    fields = ("amount", "status", "external_id", "actor", "reason", "error", "created_at", "completed_at")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("id")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "reference", "order", "provider", "status", "amount", "currency", "external_id", "created_at", "succeeded_at",
    )
    list_select_related = ("order",)
    list_filter = ("provider", "status")
    search_fields = ("reference", "external_id", "order__order_no", "order__email")
    fields = (
        "reference", "order", "provider", "status", "amount", "currency", "external_id", "checkout_id", "created_at",
        "succeeded_at",
    )
    inlines = (PaymentEventInline, RefundInline)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "provider", "external_id", "reference", "kind", "outcome", "reason_code", "amount", "verification",
        "received_at",
    )
    list_filter = ("provider", "kind", "outcome")
    search_fields = ("external_id", "reference")
    fields = (
        "provider", "external_id", "reference", "payment", "kind", "amount", "currency", "verification", "outcome",
        "reason_code", "raw_payload", "received_at",
    )
    readonly_fields = ("raw_payload",)

    @admin.display(description="payload as received")
    def raw_payload(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False, sort_keys=True))


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("payment", "amount", "status", "external_id", "actor", "created_at", "completed_at")
    list_select_related = ("payment",)
    list_filter = ("status",)
    search_fields = ("payment__reference", "external_id")
    fields = ("payment", "amount", "status", "external_id", "actor", "reason", "error", "created_at", "completed_at",
              "buyer_notified_at")


class PaymentMethodForm(forms.ModelForm):
    """The method's plain settings, plus its credentials as write-only fields:
    stored ones are sealed and shown only as "set, ends …abcd"; leaving a
    field empty keeps what is stored."""

    key = forms.CharField(required=False, label="EPay merchant key", widget=forms.PasswordInput(render_value=False))
    private_key = forms.CharField(
        required=False, label="Private key (Alipay app key / WeChat merchant key)",
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text="PEM, or the bare base64 the console shows.")
    public_key = forms.CharField(
        required=False, label="Alipay public key", widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="Alipay's public key (支付宝公钥), not the app's own public key.")
    apiv3_key = forms.CharField(required=False, label="WeChat APIv3 key",
                                widget=forms.PasswordInput(render_value=False))
    platform_public_key = forms.CharField(
        required=False, label="WeChat platform public key or certificate",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}))
    token = forms.CharField(required=False, label="epusdt API token", widget=forms.PasswordInput(render_value=False))
    secret_key = forms.CharField(required=False, label="Stripe secret key",
                                 widget=forms.PasswordInput(render_value=False))
    webhook_secret = forms.CharField(required=False, label="Stripe webhook signing secret",
                                     widget=forms.PasswordInput(render_value=False))

    CHANNELS = {
        "epay": ("", "alipay", "wxpay", "qqpay"), "alipay": ("f2f", "page", "wap"), "wechat": ("native",),
        "epusdt": ("trc20",), "stripe": ("card",),
    }

    class Meta:
        model = PaymentMethod
        exclude = ("credentials_sealed", "created_at", "updated_at")

        @staticmethod
        def formfield_callback(field, **kwargs):
            if isinstance(field, models.URLField):
                kwargs.setdefault("assume_scheme", "https")  # gateways are https
            return field.formfield(**kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        masked = credentials_masked(method=self.instance)
        for name in SECRET_FIELDS_ALL:
            if name in masked:
                self.fields[name].help_text = f"Stored ({masked[name]}). Leave empty to keep it."

    def clean(self):
        data = super().clean()
        provider, channel = data.get("provider"), data.get("channel", "")
        if provider and channel not in self.CHANNELS.get(provider, ()):
            self.add_error("channel", f"{provider} offers: {', '.join(c or '(default)' for c in self.CHANNELS[provider])}")
        stored = credentials_masked(method=self.instance)
        for name in SECRET_FIELDS.get(provider, ()):
            if not data.get(name) and name not in stored:
                self.add_error(name, "Required for this provider.")
        for name in ("private_key",):
            if data.get(name):
                try:
                    rsa_private_key_load(data[name])
                except (ValueError, TypeError) as exc:
                    self.add_error(name, f"Not a usable RSA private key: {exc}")
        for name in ("public_key", "platform_public_key"):
            if data.get(name):
                try:
                    rsa_public_key_load(data[name])
                except (ValueError, TypeError) as exc:
                    self.add_error(name, f"Not a usable RSA public key or certificate: {exc}")
        if data.get("apiv3_key") and len(data["apiv3_key"].encode()) != 32:
            self.add_error("apiv3_key", "The APIv3 key is exactly 32 characters.")
        if provider in ("epay", "alipay", "wechat") and not data.get("merchant_id"):
            self.add_error("merchant_id", "Required for this provider.")
        if provider in ("epay", "epusdt") and not data.get("gateway_url"):
            self.add_error("gateway_url", "Required for this provider.")
        if provider == "wechat":
            for name in ("app_id", "key_serial"):
                if not data.get(name):
                    self.add_error(name, "Required for WeChat Pay.")
        return data


# In the admin's order: grouped by provider (EPay, Alipay, WeChat, epusdt, Stripe).
SECRET_FIELDS_ALL = list(dict.fromkeys(name for names in SECRET_FIELDS.values() for name in names))


@admin.register(PaymentMethod)
class PaymentMethodAdmin(admin.ModelAdmin):
    form = PaymentMethodForm
    list_display = ("name", "code", "provider", "channel", "enabled", "position", "amount_range", "fee",
                    "query_before_credit", "notify_url")
    list_editable = ("enabled", "position")
    list_filter = ("provider", "enabled")
    search_fields = ("name", "name_zh", "code", "merchant_id")
    filter_horizontal = ("products",)
    ordering = ("position", "code")
    fieldsets = (
        (None, {"fields": ("code", "provider", "channel", "enabled", "position")}),
        ("Shown to buyers", {"fields": ("name", "name_zh", "icon", "min_amount", "max_amount", "fee_percent",
                                        "fee_fixed", "products")}),
        ("Merchant", {"fields": ("gateway_url", "merchant_id", "app_id", "key_serial", "platform_key_id",
                                 "usdt_rate", "query_before_credit")}),
        ("Credentials (sealed; never shown again)", {"fields": tuple(SECRET_FIELDS_ALL)}),
    )

    @admin.display(description="amount")
    def amount_range(self, obj):
        if obj.min_amount is None and obj.max_amount is None:
            return "any"
        return f"{obj.min_amount or 0} – {obj.max_amount or '∞'}"

    @admin.display(description="fee")
    def fee(self, obj):
        return f"{obj.fee_percent}% + {obj.fee_fixed}" if obj.fee_percent or obj.fee_fixed else "—"

    @admin.display(description="notify URL (give it to the provider)")
    def notify_url(self, obj):
        return f"{settings.SITE_URL}{reverse('payments:notify', args=[obj.code])}"

    change_list_template = "admin/payments/paymentmethod/change_list.html"
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_urls(self):
        return [path("doctor/", self.admin_site.admin_view(self.doctor_view), name="payments_paymentmethod_doctor"),
                *super().get_urls()]

    def doctor_view(self, request):
        """The payment doctor in the admin: the same checks as ``manage.py payments_doctor``."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        checks = payments_doctor(method_id=request.GET.get("method", ""))
        context = {**self.admin_site.each_context(request), "title": "Payment doctor", "checks": checks,
                   "failed": sum(c.status == "FAIL" for c in checks), "opts": self.model._meta}
        return TemplateResponse(request, "admin/payments/paymentmethod/doctor.html", context)

    def save_model(self, request, obj, form, change):
        previous = PaymentMethod.objects.filter(pk=obj.pk).values_list("code", flat=True).first() or ""
        payment_method_save(method=obj, previous_code=previous,
                            credentials={name: form.cleaned_data.get(name, "") for name in SECRET_FIELDS_ALL})

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        methods_forget()
