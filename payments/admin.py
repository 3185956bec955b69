"""Admin for payments, provider notices and refunds: read-only, the services write them.

Each PaymentEvent shows the notice exactly as received, how it was
authenticated and what the shop did with it: the evidence for a dispute.
"""

import json

from django.contrib import admin
from django.utils.html import format_html

from payments.models import Payment, PaymentEvent, Refund
from shop.admin import ReadOnlyAdminMixin


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
