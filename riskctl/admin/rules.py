"""Rules and thresholds (tuned without a deploy) and purchase limits."""

from django.contrib import admin
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from riskctl.forms import RuleForm
from riskctl.models import PurchaseLimit, Rule, Thresholds
from riskctl.reasons import OPERATOR_WORDS, feature_label, number_plain, rule_help, rule_label


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = ("code", "label", "signal", "condition", "action", "points", "active", "shadow", "version")
    list_editable = ("active", "shadow", "points")
    list_filter = ("active", "shadow", "action")
    readonly_fields = ("version", "updated_at")

    def save_model(self, request, obj, form, change):
        # Assessments record rule versions: every edit is a new version.
        if change:
            obj.version = F("version") + 1
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        obj.refresh_from_db()

    class Media:
        js = ("riskctl/rule_form.js",)

    @admin.display(description=_("rule"))
    def label(self, obj):
        return rule_label(obj)

    @admin.display(description=_("signal"), ordering="feature")
    def signal(self, obj):
        return feature_label(obj.feature)

    @admin.display(description=_("when"))
    def condition(self, obj):
        return f"{OPERATOR_WORDS.get(obj.operator, obj.operator)} {number_plain(obj.threshold)}"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["subtitle"] = rule_help(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(Thresholds)
class ThresholdsAdmin(admin.ModelAdmin):
    list_display = ("product", "review_at", "block_at")


@admin.register(PurchaseLimit)
class PurchaseLimitAdmin(admin.ModelAdmin):
    list_display = ("product", "per", "max_quantity", "period_hours")
    list_filter = ("per",)
    list_select_related = ("product",)
