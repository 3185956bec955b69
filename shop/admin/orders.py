"""Orders, read-only: the order page (lines, timeline, deliveries, payments), finding
orders by number, email, phone or card key, the order list's actions, order lines and events."""

from dataclasses import replace
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from delivery.models import Delivery
from inventory.keyrules import LOOSE_RULES
from inventory.models import CardKey, KeyPolicy
from inventory.redemption import MAX_KEY_LENGTH
from inventory.sealing import secret_fingerprint
from payments.models import Payment
from payments.services import RefundError, payment_refund
from riskctl.identity import phone_normalise
from riskctl.services import buyer_block, buyer_unblock, order_buyer
from shop.admin.order_actions import OrderPageActions, _actor
from shop.admin.readonly import ReadOnlyAdminMixin
from shop.models import Order, OrderEvent, OrderLine, Product
from shop.services import OrderTransitionError
from shop.services.order_links import order_links_revoke


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


# Shortest search term tried as a card key: shorter ones find too much by chance.
KEY_SEARCH_MIN_LENGTH = 6


def orders_with_key(*, text: str):
    """The ids of the orders a card key equal to ``text`` was sold, reserved
    or voided on (a subquery), found by fingerprint only: the text is
    fingerprinted once per distinct product policy (exact, hitting the
    (product, fingerprint) unique index) and once the loose way (case, spaces
    and dashes folded, the loose_fingerprint index). Nothing is decrypted."""
    text = text.strip()
    if not KEY_SEARCH_MIN_LENGTH <= len(text) <= MAX_KEY_LENGTH:
        return CardKey.objects.none().values("order_line__order_id")
    rule_fields = ("collapse_spaces", "casefold", "strip_separators", "fold_confusables")
    default = KeyPolicy().rules
    groups: dict = {}
    # One row per product, its policy's rules joined (NULL: the default policy).
    for pk, *values in Product.objects.values_list("pk", *(f"key_policy__{f}" for f in rule_fields)):
        rules = default if values[0] is None else replace(default, **dict(zip(rule_fields, values)))
        groups.setdefault(rules, []).append(pk)
    match = Q(loose_fingerprint=secret_fingerprint(LOOSE_RULES.normalise(text)))
    for rules, product_ids in groups.items():
        match |= Q(product_id__in=product_ids, fingerprint=secret_fingerprint(rules.normalise(text)))
    # No "order_line IS NOT NULL" here: it would tempt the planner off the
    # fingerprint indexes; a key in stock gives a NULL, which matches no order.
    return CardKey.objects.filter(match).values("order_line__order_id")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, OrderPageActions, admin.ModelAdmin):
    list_display = ("order_no", "status", "email", "amount", "currency", "created_at", "paid_at")
    list_filter = ("status", "created_at")
    search_fields = ("order_no", "email", "phone")
    search_help_text = _("Find an order by its number, the buyer's email or phone, or one of its card keys "
                         "(matched by fingerprint, whatever its case, spaces and dashes).")
    # token_hash is left out: a hash of the buyer's token is of no use to staff.
    fields = (
        "order_no", "status", "email", "phone", "amount", "currency", "client_ip", "hold_expires_at",
        "created_at", "updated_at", "paid_at", "delivered_at", "coupon_code", "discount", "language", "link_version",
        "card_keys",
    )
    readonly_fields = ("card_keys", "risk")
    inlines = (OrderLineInline, OrderEventInline, DeliveryInline, PaymentInline)
    actions = ("refund_orders", "block_buyers", "unblock_buyers", "revoke_links")
    change_form_template = "admin/shop/order/change_form.html"

    def get_fields(self, request, obj=None):
        return (*self.fields, "risk")

    def get_search_results(self, request, queryset, search_term):
        """Django's search (number, email, phone: any case), plus the phone as
        checkout stores it (normalised) and the orders holding a key equal
        to the term, found by fingerprint (``orders_with_key``)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return found, may_have_duplicates
        also = Q(email__iexact=term) | Q(pk__in=orders_with_key(text=term))
        phone = phone_normalise(term)
        if phone.lstrip("+"):
            also |= Q(phone__in={phone, term})
        return found | queryset.filter(also), may_have_duplicates

    @admin.display(description="risk assessments")
    def risk(self, obj):
        rows = [
            (localtime(a.created_at).strftime("%Y-%m-%d %H:%M"), a.get_stage_display(), a.decision, a.score, a.ref,
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

    @admin.action(description=_("Revoke order links"), permissions=["revoke_links"])
    def revoke_links(self, request, queryset):
        revoked = order_links_revoke(order_ids=list(queryset.values_list("pk", flat=True)), actor=_actor(request),
                                     note="revoked from the order list")
        for order in queryset.order_by("id"):
            LogEntry.objects.log_actions(user_id=request.user.pk, queryset=[order], action_flag=CHANGE,
                                         single_object=True,
                                         change_message=f"Revoked the order's links (now version "
                                                        f"{revoked.get(order.order_no)})")
        self.message_user(request, gettext("Links revoked for %(orders)s.") % {"orders": ", ".join(revoked)},
                          messages.SUCCESS)

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
