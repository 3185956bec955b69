"""What risk control recorded, read-only: assessments and risk events."""

from django.contrib import admin

from riskctl.models import Assessment, RiskEvent
from shop.admin.readonly import ReadOnlyAdminMixin


def _reasons(reasons, limit=3) -> str:
    return "; ".join(f"{r['rule']} ({r['points']})" for r in reasons[:limit]) or "—"


@admin.register(Assessment)
class AssessmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("ref", "stage", "decision", "score", "top_reasons", "email", "ip", "order", "created_at")
    list_filter = ("stage", "decision")
    search_fields = ("ref", "email", "ip", "device", "order__order_no")
    search_help_text = "Search by reference (R-XXXXX), email, IP, device or order number."
    list_select_related = ("order",)

    @admin.display(description="top reasons")
    def top_reasons(self, obj):
        return _reasons(obj.reasons)


@admin.register(RiskEvent)
class RiskEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "kind", "email", "ip", "device", "order_id", "quantity", "amount")
    list_filter = ("kind",)
    search_fields = ("email", "ip", "device", "phone")
