"""Admin for the delivery outbox: read-only, the worker and services write it."""

from django.contrib import admin
from django.utils.text import Truncator

from delivery.models import Delivery, OwnerAlert
from shop.admin import ReadOnlyAdminMixin

LAST_ERROR_CHARS = 80


def recipient_mask(recipient: str) -> str:
    """``buyer@example.com`` → ``b***@example.com``; a phone number keeps its last 4 digits."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{recipient[-4:]}" if len(recipient) > 4 else "***"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("order", "channel", "masked_recipient", "status", "attempts", "short_last_error", "sent_at")
    list_select_related = ("order",)
    list_filter = ("channel", "status")
    search_fields = ("order__order_no", "recipient")
    fields = (
        "order", "channel", "recipient", "status", "attempts", "last_error", "provider_message_id",
        "created_at", "last_attempt_at", "sent_at",
    )

    @admin.display(description="recipient", ordering="recipient")
    def masked_recipient(self, obj):
        if not obj.recipient:
            return self.get_empty_value_display()
        return recipient_mask(obj.recipient)

    @admin.display(description="last error")
    def short_last_error(self, obj):
        return Truncator(obj.last_error).chars(LAST_ERROR_CHARS)


@admin.register(OwnerAlert)
class OwnerAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "kind", "subject", "occurrences", "last_seen_at", "sent_at")
    list_filter = ("kind",)
    search_fields = ("subject", "dedupe_key")
    fields = ("kind", "subject", "body", "dedupe_key", "occurrences", "created_at", "last_seen_at", "sent_at")
