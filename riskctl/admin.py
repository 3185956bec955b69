"""Risk control in the admin: lists, rules and thresholds (tuned without a
deploy), purchase limits, assessments, and the review queue."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html_join

from riskctl.features import FEATURES
from riskctl.identity import email_normalise, ip_normalise, phone_normalise
from payments.services.refunds import RefundError
from payments.services.reviews import order_review_reject
from riskctl.models import Assessment, IdentifierKind, ListEntry, PurchaseLimit, ReviewItem, RiskEvent, Rule, Thresholds
from riskctl.services import ReviewClosed
from shop.admin import ReadOnlyAdminMixin
from shop.services import order_review_approve


class ListEntryForm(forms.ModelForm):
    class Meta:
        model = ListEntry
        fields = ("list_type", "kind", "value", "reason", "expires_at")

    def clean(self):
        data = super().clean()
        kind, value = data.get("kind"), (data.get("value") or "").strip()
        if not kind or not value:
            return data
        if kind == IdentifierKind.EMAIL:
            if "@" not in value:
                self.add_error("value", "Enter an email address.")
            value = email_normalise(value)
        elif kind == IdentifierKind.IP:
            try:
                value = ip_normalise(value)
            except ValueError:
                self.add_error("value", "Enter an IP address or a CIDR range such as 203.0.113.0/24.")
        elif kind == IdentifierKind.EMAIL_DOMAIN:
            value = value.lower().lstrip("@")
        elif kind == IdentifierKind.PHONE:
            value = phone_normalise(value)
        data["value"] = value
        return data


@admin.register(ListEntry)
class ListEntryAdmin(admin.ModelAdmin):
    form = ListEntryForm
    list_display = ("list_type", "kind", "value", "reason", "created_by", "created_at", "expires_at")
    list_filter = ("list_type", "kind")
    search_fields = ("value", "reason")
    list_select_related = ("created_by",)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class RuleForm(forms.ModelForm):
    feature = forms.ChoiceField(choices=sorted((name, f"{name}: {text}") for name, text in FEATURES.items()))

    class Meta:
        model = Rule
        fields = ("code", "description", "feature", "operator", "threshold", "action", "points", "active", "shadow")


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = ("code", "feature", "operator", "threshold", "action", "points", "active", "shadow", "version")
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


@admin.register(Thresholds)
class ThresholdsAdmin(admin.ModelAdmin):
    list_display = ("product", "review_at", "block_at")


@admin.register(PurchaseLimit)
class PurchaseLimitAdmin(admin.ModelAdmin):
    list_display = ("product", "per", "max_quantity", "period_hours")
    list_filter = ("per",)
    list_select_related = ("product",)


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


class ReviewDecisionForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Why; kept with the decision.")
    block_buyer = forms.BooleanField(required=False, help_text="Reject only: block the buyer's email, IP, device, phone.")


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The review queue: undecided first, oldest first."""

    list_display = ("order", "score", "top_reasons", "amount", "email", "ip", "device", "linked_orders", "age",
                    "outcome")
    list_filter = ("outcome",)
    search_fields = ("order__order_no", "assessment__email", "assessment__ref")
    list_select_related = ("order", "assessment")
    actions = ("approve", "reject")
    fields = ("order", "opened_at", "outcome", "decided_by", "decided_at", "note", "signals", "history")
    readonly_fields = ("signals", "history")

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.has_perm("riskctl.change_reviewitem")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("riskctl.view_reviewitem")

    def get_queryset(self, request):
        linked = (
            RiskEvent.objects.filter(kind="ORDER_CREATED", device=OuterRef("assessment__device"))
            .exclude(device="").values("device").annotate(n=Count("order_id", distinct=True)).values("n")
        )
        return (
            super().get_queryset(request)
            .annotate(linked=Coalesce(Subquery(linked), 0))
            .order_by(F("decided_at").desc(nulls_first=True), "opened_at")
        )

    def changelist_view(self, request, extra_context=None):
        oldest = ReviewItem.objects.filter(decided_at__isnull=True).order_by("opened_at").first()
        waiting = ReviewItem.objects.filter(decided_at__isnull=True).count()
        title = f"Review queue: {waiting} waiting"
        if oldest:
            title += f", oldest {self._age(oldest)}"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @staticmethod
    def _age(item) -> str:
        seconds = int((timezone.now() - item.opened_at).total_seconds())
        return str(timedelta(seconds=seconds))

    @admin.display(description="score", ordering="assessment__score")
    def score(self, obj):
        return obj.assessment.score

    @admin.display(description="top reasons")
    def top_reasons(self, obj):
        return _reasons(obj.assessment.reasons)

    @admin.display(description="amount")
    def amount(self, obj):
        return f"{obj.order.amount} {obj.order.currency}"

    @admin.display(description="email")
    def email(self, obj):
        return obj.assessment.email

    @admin.display(description="IP")
    def ip(self, obj):
        return obj.assessment.ip

    @admin.display(description="device")
    def device(self, obj):
        return obj.assessment.device[:12]

    @admin.display(description="orders on device", ordering="linked")
    def linked_orders(self, obj):
        return obj.linked

    @admin.display(description="waiting", ordering="opened_at")
    def age(self, obj):
        return "—" if obj.decided_at else self._age(obj)

    @admin.display(description="signals")
    def signals(self, obj):
        a = obj.assessment
        rows = [("reference", a.ref), ("decision", f"{a.decision} (score {a.score})"), ("email", a.email),
                ("IP", a.ip), ("device", a.device), ("phone", a.phone), ("user agent", a.user_agent)]
        rows += [(r["rule"], f"{r['points']}: {r['detail']}") for r in a.reasons]
        rows += [(f"feature {k}", v) for k, v in sorted(a.features.items())]
        return format_html_join("\n", "<div><b>{}</b>: {}</div>", rows)

    @admin.display(description="buyer history")
    def history(self, obj):
        email = obj.assessment.email
        events = RiskEvent.objects.filter(email=email).order_by("-at")[:50] if email else []
        return format_html_join("\n", "<div>{} {} order {}</div>",
                                ((e.at.strftime("%Y-%m-%d %H:%M"), e.get_kind_display(), e.order_id) for e in events))

    def _decide(self, request, queryset, approve: bool):
        form = ReviewDecisionForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                       "title": "Approve orders" if approve else "Reject and refund orders",
                       "action": "approve" if approve else "reject",
                       "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)]}
            return TemplateResponse(request, "admin/riskctl/reviewitem/decide.html", context)
        done = 0
        for item in queryset.filter(decided_at__isnull=True):
            try:
                if approve:
                    order_review_approve(order_id=item.order_id, user=request.user, note=form.cleaned_data["note"])
                else:
                    order_review_reject(order_id=item.order_id, user=request.user, note=form.cleaned_data["note"],
                                        block_buyer=form.cleaned_data["block_buyer"])
                done += 1
            except (ReviewClosed, RefundError) as exc:
                self.message_user(request, f"order {item.order_id}: {exc}", messages.ERROR)
        self.message_user(request, f"{done} {'approved' if approve else 'rejected and refunded'}.", messages.SUCCESS)
        return None

    @admin.action(description="Approve (deliver the keys)", permissions=["change"])
    def approve(self, request, queryset):
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject (refund, release the keys)", permissions=["change"])
    def reject(self, request, queryset):
        return self._decide(request, queryset, approve=False)


@admin.register(RiskEvent)
class RiskEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "kind", "email", "ip", "device", "order_id", "quantity", "amount")
    list_filter = ("kind",)
    search_fields = ("email", "ip", "device", "phone")
