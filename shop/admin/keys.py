"""What buyers did with their keys: reveals (read-only) and reports of keys that do not work."""

from django.contrib import admin, messages

from shop.admin.readonly import ReadOnlyAdminMixin
from shop.models import KeyReport, KeyReportStatus, KeyReveal


@admin.register(KeyReveal)
class KeyRevealAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("order", "card_key_id", "at", "ip", "user_agent")
    search_fields = ("order__order_no",)
    list_filter = ("at",)


@admin.register(KeyReport)
class KeyReportAdmin(admin.ModelAdmin):
    """Keys buyers said do not work. Replace one from the order's key in the
    inventory admin, then mark the report resolved here."""

    list_display = ("order", "card_key_id", "status", "reason", "replacement_key_id", "ip", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("order__order_no",)
    readonly_fields = ("order", "card_key", "reason", "status", "replacement_key", "ip", "created_at")
    actions = ("mark_resolved",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Mark selected reports resolved")
    def mark_resolved(self, request, queryset):
        done = queryset.filter(status=KeyReportStatus.OPEN).update(status=KeyReportStatus.RESOLVED)
        self.message_user(request, f"{done} reports marked resolved.", messages.SUCCESS)
