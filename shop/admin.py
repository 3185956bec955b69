"""Admin for the catalogue and orders.

Orders change only through services (checkout, callback, delivery), so their
admin pages are read-only; the order page gathers its lines, timeline,
deliveries and payments as read-only inlines.
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from delivery.models import Delivery
from inventory.models import CardKeyStatus
from payments.methods import methods_all
from payments.models import Payment
from payments.services import RefundError, payment_refund
from payments.services.manual import (
    ManualCompletionRefused,
    ManualCompletionUnverified,
    payment_manual_complete,
)
from riskctl.services import buyer_block, buyer_unblock, order_buyer
from shop.models import (
    Category,
    Coupon,
    KeyReport,
    KeyReportStatus,
    KeyReveal,
    Order,
    OrderEvent,
    OrderLine,
    Product,
    QuantityTier,
)
from shop.services import OrderTransitionError, coupon_code_normalise


class ReadOnlyAdminMixin:
    """Rows written only by services (or append-only): staff may look, never
    add, edit or delete. ``obj=None`` defaults fit both ModelAdmin and inlines."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class QuantityTierInline(admin.TabularInline):
    model = QuantityTier
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    inlines = (QuantityTierInline,)
    list_display = ("name", "slug", "price", "currency", "active", "max_per_order", "available_keys")
    list_filter = ("active",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("available_keys",)

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


class OrderLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderLine
    fields = ("product", "quantity", "unit_price", "amount")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product").order_by("id")


class OrderEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderEvent
    fields = ("type", "at", "actor", "data")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("at", "id")


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Delivery
    fields = ("channel", "recipient", "status", "attempts", "last_error", "last_attempt_at", "sent_at")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("id")


class PaymentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Payment
    fields = ("reference", "provider", "status", "amount", "currency", "external_id", "created_at", "succeeded_at")
    extra = 0
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("id")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("order_no", "status", "email", "amount", "currency", "created_at", "paid_at")
    list_filter = ("status", "created_at")
    search_fields = ("order_no", "email", "phone")
    # token_hash is left out: a hash of the buyer's token is of no use to staff.
    fields = (
        "order_no", "status", "email", "phone", "amount", "currency", "client_ip", "hold_expires_at",
        "created_at", "updated_at", "paid_at", "delivered_at", "coupon_code", "discount", "language", "card_keys",
    )
    readonly_fields = ("card_keys", "risk", "manual_completion")
    inlines = (OrderLineInline, OrderEventInline, DeliveryInline, PaymentInline)
    actions = ("refund_orders", "block_buyers", "unblock_buyers")

    def get_fields(self, request, obj=None):
        return (*self.fields, "risk", "manual_completion")

    @admin.display(description="补单 (paid, but no notice arrived)")
    def manual_completion(self, obj):
        if obj is None or obj.status not in ("PENDING_PAYMENT", "EXPIRED"):
            return "—"
        url = reverse("admin:shop_order_complete_payment", args=[obj.pk])
        return format_html('<a class="button" href="{}">Complete against the provider\'s trade number</a>', url)

    def get_urls(self):
        return [
            path("<int:order_id>/complete-payment/", self.admin_site.admin_view(self.complete_payment_view),
                 name="shop_order_complete_payment"),
            *super().get_urls(),
        ]

    def complete_payment_view(self, request, order_id: int):
        """补单: ask the provider about the trade; complete it through the paid path."""
        if not request.user.has_perm("payments.add_paymentevent"):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=order_id)
        form = ManualCompletionForm(request.POST or None, order=order)
        unverified = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            actor = f"staff:{request.user.get_username()}"
            try:
                done = payment_manual_complete(
                    order_id=order.pk, method_id=data["method"], trade_no=data["trade_no"], actor=actor,
                    reason=data["reason"], amount=data["amount"], unverified_ok=data["confirm_unverified"])
            except ManualCompletionUnverified as exc:
                unverified = exc.message
            except ManualCompletionRefused as exc:
                form.add_error(None, f"{exc.message} ({exc.code})")
            else:
                LogEntry.objects.log_actions(
                    user_id=request.user.pk, queryset=[order], action_flag=CHANGE, single_object=True,
                    change_message=f"补单 ({'verified' if done.verified else 'UNVERIFIED'}): {data['method']} trade "
                                   f"{data['trade_no']}; {'paid' if done.accepted else 'refused ' + done.code}; "
                                   f"reason: {data['reason'] or '-'}")
                level = messages.SUCCESS if done.accepted else messages.ERROR
                self.message_user(request, (
                    f"{order.order_no}: {'confirmed by the provider' if done.verified else 'completed UNVERIFIED'}, "
                    f"{'paid' if done.accepted else 'refused: ' + done.code}"
                    f"{' (the notice had already arrived)' if done.duplicate else ''}."), level)
                return redirect("admin:shop_order_change", order.pk)
        context = {**self.admin_site.each_context(request), "title": f"补单: complete order {order.order_no}",
                   "order": order, "form": form, "unverified": unverified, "opts": self.model._meta}
        return TemplateResponse(request, "admin/shop/order/complete_payment.html", context)

    @admin.display(description="risk assessments")
    def risk(self, obj):
        rows = [
            (a.created_at.strftime("%Y-%m-%d %H:%M"), a.get_stage_display(), a.decision, a.score, a.ref,
             "; ".join(f"{r['rule']} ({r['points']})" for r in a.reasons[:3]) or "no rule matched")
            for a in obj.risk_assessments.order_by("created_at")
        ]
        return format_html_join("\n", "<div>{} {}: {} (score {}, {}) — {}</div>", rows) or "—"

    def has_block_permission(self, request) -> bool:
        return request.user.has_perm("riskctl.add_listentry")

    @admin.action(description="Block these buyers (email, IP, device, phone)", permissions=["block"])
    def block_buyers(self, request, queryset):
        for order in queryset.order_by("id"):
            buyer = order_buyer(order_id=order.pk)
            if buyer is None:
                self.message_user(request, f"{order.order_no}: no identifiers recorded.", messages.ERROR)
                continue
            entries = buyer_block(buyer=buyer, reason=f"blocked from order {order.order_no}", user=request.user)
            self.message_user(request, f"{order.order_no}: blocked {', '.join(e.kind for e in entries)}.")

    @admin.action(description="Unblock these buyers", permissions=["block"])
    def unblock_buyers(self, request, queryset):
        for order in queryset.order_by("id"):
            buyer = order_buyer(order_id=order.pk)
            if buyer is None:
                continue
            still = buyer_unblock(buyer=buyer)
            if still:
                listed = "; ".join(str(entry) for entry in still)
                self.message_user(request, f"{order.order_no}: unblocked, but still blocked by {listed}.",
                                  messages.WARNING)
            else:
                self.message_user(request, f"{order.order_no}: unblocked.")

    @admin.display(description="card keys")
    def card_keys(self, obj):
        url = reverse("admin:inventory_cardkey_changelist") + "?" + urlencode({"q": obj.order_no})
        return format_html('<a href="{}">Keys of this order (masked)</a>', url)

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm("payments.add_refund")

    @admin.action(description="Refund: give the money back, return unsent keys to stock", permissions=["refund"])
    def refund_orders(self, request, queryset):
        actor = f"staff:{request.user.get_username()}"
        for order in queryset.order_by("id"):
            try:
                refund = payment_refund(order=order, actor=actor, reason="refunded from admin")
            except (RefundError, OrderTransitionError) as refused:
                self.message_user(request, f"{order.order_no}: not refunded ({refused.code}).", messages.ERROR)
                continue
            level = messages.ERROR if refund.status == "FAILED" else messages.SUCCESS
            self.message_user(request, f"{order.order_no}: refund {refund.get_status_display().lower()}.", level)


class ManualCompletionForm(forms.Form):
    method = forms.ChoiceField(label="Payment method")
    trade_no = forms.CharField(max_length=64, label="Provider's trade number",
                               help_text="As shown in the merchant panel (trade_no / transaction_id / trade_id).")
    amount = forms.DecimalField(max_digits=12, decimal_places=2, required=False,
                                help_text="Only for an unverified 补单: what the buyer paid, if it differs.")
    reason = forms.CharField(max_length=300, required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="What proof you saw. Required when the provider cannot confirm.")
    confirm_unverified = forms.BooleanField(
        required=False, label="Complete it even though the provider cannot confirm it",
        help_text="Marked UNVERIFIED on the order and raised to the owner.")

    def __init__(self, *args, order, **kwargs):
        super().__init__(*args, **kwargs)
        used = list(order.payments.order_by("-id").values_list("provider", flat=True))
        choices = [(m.id, f"{m.name} ({m.id})") for m in methods_all()]
        choices.sort(key=lambda c: (c[0] not in used, used.index(c[0]) if c[0] in used else 0))
        self.fields["method"].choices = choices


@admin.register(OrderLine)
class OrderLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "order", "product", "quantity", "unit_price", "amount")
    list_select_related = ("order", "product")
    list_filter = ("product",)
    search_fields = ("order__order_no",)


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Append-only: a database trigger refuses UPDATE and DELETE anyway."""

    list_display = ("order", "type", "at", "actor")
    list_select_related = ("order",)
    list_filter = ("type",)
    search_fields = ("order__order_no",)
    fields = ("order", "type", "at", "actor", "data")


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "name_zh", "slug", "position")
    prepopulated_fields = {"slug": ("name",)}


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
