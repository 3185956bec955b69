"""The order page's Actions panel: resend, refund, replace a key, 补单, revoke links."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from delivery.models import Channel, Delivery
from inventory.selectors import keys_for_order
from inventory.services import KeyStateError, KeysUnavailable
from payments.models import PaymentStatus, RefundStatus
from payments.services import RefundError, payment_refund
from payments.services.manual import ManualCompletionRefused, ManualCompletionUnverified, payment_manual_complete
from riskctl.identity import client_ip
from shop.admin.order_forms import ManualCompletionForm, RefundForm, ReplaceKeyForm, ResendForm, RevokeLinksForm
from shop.models import Order, OrderStatus
from shop.services import (
    REFUNDABLE_STATUSES,
    KeyActionRefused,
    OrderTransitionError,
    ResendNotAllowed,
    order_key_staff_replace,
    order_resend,
)
from shop.services.order_links import order_links_revoke

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


class OrderPageActions:
    """The Actions panel of the order page and the pages behind it; mixed into
    ``OrderAdmin``. Each action applies to the order as it is now and needs its
    own permission."""

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
                    % {"product": str(old.product), "key": old.pk}, messages.ERROR)
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
