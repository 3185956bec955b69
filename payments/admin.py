"""Admin for payments and provider notifications: read-only, the callback writes them."""

from django.contrib import admin

from payments.models import Payment, PaymentEvent
from shop.admin import ReadOnlyAdminMixin


class PaymentEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PaymentEvent
    fields = ("external_id", "outcome", "reason_code", "amount", "currency", "received_at")
    extra = 0
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("received_at", "id")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "reference", "order", "provider", "status", "amount", "currency", "external_id", "created_at", "succeeded_at",
    )
    list_select_related = ("order",)
    list_filter = ("provider", "status")
    search_fields = ("reference", "external_id", "order__order_no", "order__email")
    fields = (
        "reference", "order", "provider", "status", "amount", "currency", "external_id", "created_at", "succeeded_at",
    )
    inlines = (PaymentEventInline,)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("provider", "external_id", "reference", "outcome", "reason_code", "amount", "received_at")
    list_filter = ("provider", "outcome")
    search_fields = ("external_id", "reference")
    fields = (
        "provider", "external_id", "reference", "payment", "amount", "currency", "outcome", "reason_code",
        "payload", "received_at",
    )
