"""Admin for the catalogue and orders.

Orders change only through services (checkout, callback, delivery), so their
admin pages are read-only; the order page gathers its lines, timeline,
deliveries and payments as read-only inlines.
"""

from dataclasses import replace
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime, now
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from delivery.models import Channel, Delivery
from inventory.keyrules import LOOSE_RULES
from inventory.models import CardKey, CardKeyStatus, KeyPolicy
from inventory.redemption import MAX_KEY_LENGTH
from inventory.sealing import SealError, secret_fingerprint
from inventory.selectors import keys_for_order
from inventory.services import KeyStateError, KeysUnavailable
from payments.methods import methods_all
from payments.models import Payment, PaymentStatus, RefundStatus
from payments.services import RefundError, payment_refund
from payments.services.manual import (
    ManualCompletionRefused,
    ManualCompletionUnverified,
    payment_manual_complete,
)
from riskctl.identity import client_ip, phone_normalise
from riskctl.services import buyer_block, buyer_unblock, order_buyer
from shop.images import image_check as product_image_check
from shop.images import product_image_apply
from shop.models import FaqEntry, ShopProfile
from shop.models import SignInLink, StockAlertRequest
from shop.models import (
    Category,
    Coupon,
    KeyReport,
    KeyReportStatus,
    KeyReveal,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Product,
    QuantityTier,
)
from shop.profile import profile_qr_store, qr_image_fit, shop_profile_forget
from shop.services import (
    REFUNDABLE_STATUSES,
    KeyActionRefused,
    OrderTransitionError,
    ResendNotAllowed,
    coupon_code_normalise,
    order_key_staff_replace,
    order_resend,
)
from shop.services.order_links import order_links_revoke


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


class ProductAdminForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = "__all__"

    def clean_image(self):
        """Refuse what shop.images would refuse (too big, too many pixels, not
        a picture Pillow reads), with its sentence, before anything is saved."""
        image = self.cleaned_data.get("image")
        if isinstance(image, UploadedFile):
            image.seek(0)
            product_image_check(data=image.read())
            image.seek(0)
        return image


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    inlines = (QuantityTierInline,)
    list_display = ("name", "name_zh", "slug", "category", "price", "currency", "active", "max_per_order",
                    "available_keys")
    list_filter = ("active", "category")
    search_fields = ("name", "name_zh", "slug")
    list_select_related = ("category",)
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("available_keys", "image_preview")
    fieldsets = (
        (_("Basics"), {"fields": ("name", "slug", "category", "price", "currency", "active", "available_keys")}),
        (_("Content in English"), {
            "fields": ("description", "usage_notes"),
            "description": _("Markdown: **bold**, *italic*, lists, [links](https://…), ### headings. "
                             "An empty field shows the Chinese text."),
        }),
        (_("Content in Chinese"), {
            "fields": ("name_zh", "description_zh", "usage_notes_zh"),
            "description": _("Shown to buyers who read Chinese; an empty field shows the English text."),
        }),
        (_("Image"), {"fields": ("image", "image_preview")}),
        (_("Delivery"), {"fields": ("deliver_by_email", "deliver_by_sms", "auto_replacements_per_order")}),
        (_("Limits"), {"fields": ("max_per_order", "hold_minutes")}),
    )

    @admin.display(description=_("preview"))
    def image_preview(self, obj):
        if not obj or not obj.image_thumb:
            return _("No image: the shop shows a tile with the name's first letter.")
        return format_html('<img src="{}" alt="" width="240" height="180" class="product-thumb">', obj.thumb_url)

    def save_model(self, request, obj, form, change):
        # The upload is stored scaled and under its hash (shop.images), never
        # as it came; clearing the image clears the thumbnail with it.
        image = form.cleaned_data.get("image")
        if "image" in form.changed_data and isinstance(image, UploadedFile):
            image.seek(0)
            product_image_apply(product=obj, data=image.read())
        elif not obj.image:
            obj.image_thumb = ""
        super().save_model(request, obj, form, change)

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


# --- the order page: staff actions and finding orders ---------------------------

# Shortest search term tried as a card key: shorter ones find too much by chance.
KEY_SEARCH_MIN_LENGTH = 6
# Orders whose buyer may be sent the keys again / whose keys can be replaced.
_UNPAID = (OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED)

# Why a refund was refused, in words staff understand (codes from payment_refund and the providers).
REFUND_REFUSALS = {
    "ORDER_STATE_CONFLICT": _("only a paid order whose keys were not handed over can be refunded"),
    "PAYMENT_NOT_FOUND": _("the order has no successful payment to refund"),
    "ALREADY_REFUNDED": _("the order is already refunded"),
    "REFUND_UNSUPPORTED": _("this payment method cannot refund through its provider; refund by hand"),
    "CURRENCY_UNSUPPORTED": _("the provider cannot refund this currency; refund by hand"),
    "PAYMENT_UNKNOWN": _("the provider does not know this payment"),
    "PROVIDER_UNKNOWN": _("the payment method is no longer configured"),
}
REFUND_REFUSED_OTHERWISE = _("the provider refused or could not be reached")


def refund_refusal_words(code: str) -> str:
    return str(REFUND_REFUSALS.get(code, REFUND_REFUSED_OTHERWISE))


def _actor(request) -> str:
    return f"staff:{request.user.get_username()}"


def _key_label(key: CardKey) -> str:
    """A delivered key as staff pick it: its id, product and last characters only."""
    try:
        masked = key.secret_masked
    except SealError:  # sealed under a retired encryption key: still replaceable
        masked = "••••"
    return f"#{key.pk} · {key.product.name} · {masked}"


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


class ResendForm(forms.Form):
    channels = forms.MultipleChoiceField(label=_("Send to"), widget=forms.CheckboxSelectMultiple)
    note = forms.CharField(label=_("Note"), max_length=300, required=False,
                           widget=forms.Textarea(attrs={"rows": 2}),
                           help_text=_("Optional: why. Kept on the order's timeline."))

    def __init__(self, *args, deliveries, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channels"].choices = [
            (d.channel, f"{d.get_channel_display()}: {d.recipient} ({d.get_status_display()})") for d in deliveries
        ]
        self.fields["channels"].initial = [d.channel for d in deliveries]


class RevokeLinksForm(forms.Form):
    note = forms.CharField(label=_("Note"), max_length=300, required=False,
                           widget=forms.Textarea(attrs={"rows": 2}),
                           help_text=_("Optional: why (for example: the buyer says the link leaked). Kept on the "
                                       "order's timeline."))


class RefundForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=300, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text=_("Required. Kept on the order's timeline and the refund."))


class ReplaceKeyForm(forms.Form):
    key = forms.TypedChoiceField(label=_("Key to replace"), coerce=int, widget=forms.RadioSelect)
    reason = forms.CharField(label=_("Reason"), max_length=200, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text=_("Required. Kept on the order's timeline and the key's audit trail."))
    resend = forms.BooleanField(
        label=_("Also send the keys again by email / SMS"), required=False, initial=True,
        help_text=_("The order page shows the new key at once either way."))

    def __init__(self, *args, keys, can_resend: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [(key.pk, _key_label(key)) for key in keys]
        if len(keys) == 1:
            self.fields["key"].initial = keys[0].pk
        if not can_resend:
            del self.fields["resend"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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

    # --- the Actions panel -----------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        order = self.get_object(request, object_id)
        if order is not None:
            extra_context = {**(extra_context or {}), "order_actions": self._order_actions(request, order)}
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def _order_actions(self, request, order: Order) -> list[dict]:
        """The actions that apply to the order as it is now and that this user may take."""
        actions = []

        def offer(action_id: str, label, url: str, help_text) -> None:
            actions.append({"id": action_id, "label": label, "url": url, "help": help_text})

        if self._resend_applies(order) and self.has_resend_permission(request):
            offer("resend", _("Resend"), reverse("admin:shop_order_resend", args=[order.pk]),
                  _("Send the same keys again to the buyer's email / phone."))
        if self._replace_applies(order) and self.has_replace_key_permission(request):
            offer("replace-key", _("Replace a key"), reverse("admin:shop_order_replace_key", args=[order.pk]),
                  _("Void one delivered key and hand over a fresh one from stock."))
        if self._refund_applies(order) and self.has_refund_permission(request):
            offer("refund", _("Refund"), reverse("admin:shop_order_refund", args=[order.pk]),
                  _("Give the money back; keys not yet handed over return to stock."))
        if order.status in _UNPAID and request.user.has_perm("payments.add_paymentevent"):
            offer("complete-payment", _("补单 (complete payment)"),
                  reverse("admin:shop_order_complete_payment", args=[order.pk]),
                  _("The buyer paid but no payment notice arrived."))
        if self.has_block_permission(request):
            offer("block-buyer", _("Block buyer"), self._block_buyer_url(order),
                  _("Block the buyer's email, IP, device and phone."))
        if self.has_revoke_links_permission(request):
            offer("revoke-links", _("Revoke order links"), reverse("admin:shop_order_revoke_links", args=[order.pk]),
                  _("Links to this order sent so far (email, SMS, Copy link) stop working; the buyer can ask "
                    "for a new one."))
        return actions

    @staticmethod
    def _block_buyer_url(order: Order) -> str:
        url = reverse("admin:riskctl_block_buyer", args=[order.pk])
        return url + "?" + urlencode({"next": reverse("admin:shop_order_change", args=[order.pk])})

    @staticmethod
    def _resend_applies(order: Order) -> bool:
        return order.keys_visible and order.deliveries.exclude(channel=Channel.INBOX).exists()

    @staticmethod
    def _replace_applies(order: Order) -> bool:
        return order.keys_visible and keys_for_order(order_id=order.pk).exists()

    @staticmethod
    def _refund_applies(order: Order) -> bool:
        """Paid and not handed over; or refunded, but the provider's refund failed (retry)."""
        paid = order.payments.filter(status=PaymentStatus.SUCCEEDED)
        if order.status in REFUNDABLE_STATUSES:
            return paid.exists()
        return order.status == OrderStatus.REFUNDED and paid.exclude(
            refunds__status__in=[s for s in RefundStatus.values if s != RefundStatus.FAILED]).exists()

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("delivery.change_delivery")

    def has_replace_key_permission(self, request) -> bool:
        return request.user.has_perm("inventory.replace_cardkey")

    def _action_order(self, request, order_id: int, *, allowed: bool) -> Order:
        if not (allowed and self.has_view_permission(request)):
            raise PermissionDenied
        return get_object_or_404(Order, pk=order_id)

    def _action_page(self, request, order: Order, *, form, title: str, intro: str, submit: str, danger=False):
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "order": order, "form": form,
            "title": title, "intro": intro, "submit": submit, "danger": danger,
        }
        return TemplateResponse(request, "admin/shop/order/action_confirm.html", context)

    def _action_done(self, request, order: Order, *, log: str, message: str, level=messages.SUCCESS):
        """After an action: the admin log, the message, back to the order."""
        LogEntry.objects.log_actions(user_id=request.user.pk, queryset=[order], action_flag=CHANGE,
                                     change_message=log, single_object=True)
        return self._back(request, order, message, level)

    def _back(self, request, order: Order, message: str, level):
        self.message_user(request, message, level)
        return redirect("admin:shop_order_change", order.pk)

    def _not_now(self, request, order: Order, action):
        return self._back(request, order, gettext("%(action)s does not apply to order %(order)s while it is %(status)s.")
                          % {"action": action, "order": order.order_no, "status": order.get_status_display()},
                          messages.ERROR)

    def resend_view(self, request, order_id: int):
        """Send the SAME keys again (``order_resend``: only once they were handed over)."""
        order = self._action_order(request, order_id, allowed=self.has_resend_permission(request))
        if not self._resend_applies(order):
            return self._not_now(request, order, gettext("Resend"))
        deliveries = list(order.deliveries.exclude(channel=Channel.INBOX).order_by("id"))
        form = ResendForm(request.POST if request.method == "POST" else None, deliveries=deliveries)
        if request.method == "POST" and form.is_valid():
            channels, note = form.cleaned_data["channels"], form.cleaned_data["note"].strip()
            try:
                resent = order_resend(order_id=order.pk, actor=_actor(request), channels=channels, note=note)
            except ResendNotAllowed as refused:
                return self._back(request, order, gettext("Not resent: %(why)s") % {"why": refused.message},
                                  messages.ERROR)
            if not resent:
                return self._back(request, order, gettext("Nothing was resent: no delivery on those channels."),
                                  messages.WARNING)
            sent_to = ", ".join(Delivery.objects.filter(pk__in=resent).order_by("id").values_list("channel", flat=True))
            return self._action_done(
                request, order, log=f"Resent the same keys ({sent_to}); note: {note or '-'}",
                message=gettext("%(order)s: the same keys are being sent again (%(channels)s).")
                % {"order": order.order_no, "channels": sent_to})
        return self._action_page(
            request, order, form=form, title=gettext("Resend the keys of order %(order)s") % {"order": order.order_no},
            intro=gettext("The SAME keys are sent again; no new key is taken from stock."), submit=gettext("Resend"))

    def refund_view(self, request, order_id: int):
        """Give the money back (``payment_refund``): the order delivers nothing more."""
        order = self._action_order(request, order_id, allowed=self.has_refund_permission(request))
        if not self._refund_applies(order):
            return self._not_now(request, order, gettext("Refund"))
        form = RefundForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"].strip()
            try:
                refund = payment_refund(order=order, actor=_actor(request), reason=reason)
            except (RefundError, OrderTransitionError) as refused:
                return self._back(request, order, gettext("%(order)s was not refunded: %(why)s (%(code)s).") % {
                    "order": order.order_no, "why": refund_refusal_words(refused.code), "code": refused.code},
                    messages.ERROR)
            log = f"Refund {refund.status} ({refund.amount} {order.currency}); reason: {reason}"
            if refund.status == RefundStatus.FAILED:
                code = refund.error.partition(":")[0]
                return self._action_done(request, order, log=log, level=messages.ERROR, message=gettext(
                    "%(order)s: the provider's refund failed: %(why)s (%(code)s). The order is taken back and its "
                    "keys are in stock; refund by hand at the provider, or try Refund again.") % {
                    "order": order.order_no, "why": refund_refusal_words(code), "code": code})
            if refund.status == RefundStatus.MANUAL:
                return self._action_done(request, order, log=log, level=messages.WARNING, message=gettext(
                    "%(order)s: refund recorded; this provider has no refund API, so refund %(amount)s %(currency)s "
                    "by hand (the owner has been sent the steps).") % {
                    "order": order.order_no, "amount": refund.amount, "currency": order.currency})
            return self._action_done(request, order, log=log, message=gettext(
                "%(order)s: refunded %(amount)s %(currency)s.") % {
                "order": order.order_no, "amount": refund.amount, "currency": order.currency})
        return self._action_page(
            request, order, form=form, danger=True,
            title=gettext("Refund order %(order)s") % {"order": order.order_no},
            intro=gettext("%(amount)s %(currency)s go back to the buyer through the provider; the order will "
                          "deliver nothing and its reserved keys return to stock. This cannot be undone.")
            % {"amount": order.amount, "currency": order.currency},
            submit=gettext("Refund"))

    def replace_key_view(self, request, order_id: int):
        """Void one delivered key and hand over a fresh one (``order_key_staff_replace``)."""
        order = self._action_order(request, order_id, allowed=self.has_replace_key_permission(request))
        if not self._replace_applies(order):
            return self._not_now(request, order, gettext("Replace a key"))
        keys = list(keys_for_order(order_id=order.pk))
        form = ReplaceKeyForm(request.POST if request.method == "POST" else None, keys=keys,
                              can_resend=self._resend_applies(order))
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            old = next(key for key in keys if key.pk == data["key"])
            try:
                new_id = order_key_staff_replace(order_id=order.pk, key_id=old.pk, actor=_actor(request),
                                                 reason=data["reason"], ip=client_ip(request) or None,
                                                 resend=data.get("resend", False))
            except KeysUnavailable:
                return self._back(request, order, gettext(
                    "No key of %(product)s is in stock: nothing was changed, key #%(key)s is still the buyer's.")
                    % {"product": old.product.name, "key": old.pk}, messages.ERROR)
            except (KeyActionRefused, KeyStateError, OrderTransitionError) as refused:
                return self._back(request, order, gettext("Key #%(key)s was not replaced (%(code)s).")
                                  % {"key": old.pk, "code": refused.code}, messages.ERROR)
            done = (gettext("%(order)s: key #%(old)s voided, key #%(new)s handed over; the keys are being sent "
                            "again.") if data.get("resend") else
                    gettext("%(order)s: key #%(old)s voided, key #%(new)s handed over."))
            return self._action_done(
                request, order,
                log=f"Replaced key #{old.pk} with #{new_id}; reason: {data['reason'].strip()}"
                    f"{'; keys sent again' if data.get('resend') else ''}",
                message=done % {"order": order.order_no, "old": old.pk, "new": new_id})
        return self._action_page(
            request, order, form=form, danger=True,
            title=gettext("Replace a key of order %(order)s") % {"order": order.order_no},
            intro=gettext("The key you pick is voided (kept on the order as evidence) and a fresh key of the same "
                          "product is taken from stock and shown on the buyer's order page."),
            submit=gettext("Replace the key"))

    def get_urls(self):
        def view(method, route: str, name: str):
            return path(f"<int:order_id>/{route}/", self.admin_site.admin_view(method), name=f"shop_order_{name}")

        return [
            view(self.complete_payment_view, "complete-payment", "complete_payment"),
            view(self.resend_view, "resend", "resend"),
            view(self.refund_view, "refund", "refund"),
            view(self.replace_key_view, "replace-key", "replace_key"),
            view(self.revoke_links_view, "revoke-links", "revoke_links"),
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

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm("payments.add_refund")

    def has_revoke_links_permission(self, request) -> bool:
        return request.user.has_perm("shop.change_order")

    def revoke_links_view(self, request, order_id: int):
        """Revoke every link to the order (``order_links_revoke``): a leaked link stops opening it."""
        order = self._action_order(request, order_id, allowed=self.has_revoke_links_permission(request))
        form = RevokeLinksForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            note = form.cleaned_data["note"].strip()
            version = order_links_revoke(order_ids=[order.pk], actor=_actor(request), note=note)[order.order_no]
            return self._action_done(
                request, order, log=f"Revoked the order's links (now version {version}); note: {note or '-'}",
                message=gettext("%(order)s: every link to this order sent so far no longer opens it. The buyer can "
                                 "ask for a new one on the lookup page.") % {"order": order.order_no})
        return self._action_page(
            request, order, form=form, danger=True,
            title=gettext("Revoke the links of order %(order)s") % {"order": order.order_no},
            intro=gettext("Every link to this order sent so far (in emails, text messages, or copied from the order "
                          "page) stops opening it, and browsers that opened the order through one lose it. A buyer "
                          "signed in with the order's email still sees it. The buyer can ask for a new link on the "
                          "lookup page."),
            submit=gettext("Revoke order links"))

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


# --- shop profile (notice, contact channels) and FAQ ---------------------------------


class ShopProfileForm(forms.ModelForm):
    class Meta:
        model = ShopProfile
        exclude = ("updated_at",)

    def clean_telegram(self):
        # Owners paste "@name" or the t.me link; the field keeps the bare name.
        value = self.cleaned_data["telegram"].strip()
        for prefix in ("https://t.me/", "http://t.me/", "t.me/", "@"):
            value = value.removeprefix(prefix)
        return value

    def clean_contact_qq(self):
        return "".join(self.cleaned_data["contact_qq"].split())

    def clean_wechat_qr(self):
        picture = self.cleaned_data.get("wechat_qr")
        if isinstance(picture, UploadedFile):
            # Checked and scaled here, so a refused picture is a field error;
            # written in save_model once the whole form is valid.
            return qr_image_fit(data=picture.read())
        return picture


@admin.register(ShopProfile)
class ShopProfileAdmin(admin.ModelAdmin):
    """One row: the list is the row's own page, and there is no second to add."""

    form = ShopProfileForm
    fieldsets = (
        (_("Notice (公告)"), {"fields": ("notice_on", "notice_until", "notice", "notice_zh"),
                              "description": _("Shown under the header of every page until the buyer closes it; "
                                               "edited text shows again to everyone.")}),
        (_("Contact channels"), {"fields": ("contact_email", "contact_qq", "wechat_id", "wechat_qr", "telegram",
                                            "support_hours", "support_hours_zh"),
                                 "description": _("Shown in the footer and on the help page, and wherever the shop "
                                                  "tells buyers to contact you. Leave empty what you do not use.")}),
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        ShopProfile.objects.get_or_create(pk=1)
        return redirect(reverse("admin:shop_shopprofile_change", args=[1], current_app=self.admin_site.name))

    def response_change(self, request, obj):
        # Back to the row itself, not to a list of one.
        response = super().response_change(request, obj)
        if response.status_code == 302 and "_continue" not in request.POST:
            return redirect(request.path)
        return response

    def save_model(self, request, obj, form, change):
        picture = form.cleaned_data.get("wechat_qr")
        if isinstance(picture, ContentFile):
            profile_qr_store(profile=obj, picture=picture)
        obj.updated_at = now()
        super().save_model(request, obj, form, change)
        shop_profile_forget()


@admin.register(FaqEntry)
class FaqEntryAdmin(admin.ModelAdmin):
    list_display = ("__str__", "question_zh", "position", "active")
    list_display_links = ("__str__",)
    list_editable = ("position", "active")
    ordering = ("position", "id")
    search_fields = ("question", "question_zh", "answer", "answer_zh")
    fields = ("question", "answer", "question_zh", "answer_zh", "position", "active")


# --- back-in-stock requests and sign-in links (helper C) ---------------------------

@admin.register(StockAlertRequest)
class StockAlertRequestAdmin(admin.ModelAdmin):
    """Buyers waiting for a sold-out product. Emailed once, automatically, when
    its keys are imported; staff look, or cancel a request."""

    list_display = ("product", "email", "language", "created_at", "notified_at", "unsubscribed_at")
    list_select_related = ("product",)
    list_filter = (("notified_at", admin.EmptyFieldListFilter), "product")
    search_fields = ("email", "product__name", "product__slug")
    readonly_fields = ("product", "email", "language", "created_at", "notified_at", "unsubscribed_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SignInLink)
class SignInLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """"All my orders" links sent (the token is never stored): when, to whom, used or not."""

    list_display = ("email", "created_at", "expires_at", "used_at")
    search_fields = ("email",)
