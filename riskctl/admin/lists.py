"""Allow and block lists, and the block-buyer page (the owner picks the identifiers and for how long)."""

from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from riskctl.forms import KIND_WORDS, BlockReasonForm, BuyerBlockForm
from riskctl.identity import BuyerContext, email_normalise, ip_normalise, phone_normalise
from riskctl.models import IdentifierKind, ListEntry
from riskctl.selectors import identifier_sharers
from riskctl.services import buyer_block, order_buyer
from shop.models import Order


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

    def get_urls(self):
        return [
            path("block/<int:order_id>/", self.admin_site.admin_view(self.block_buyer_view),
                 name="riskctl_block_buyer"),
            *super().get_urls(),
        ]

    def block_buyer_view(self, request, order_id: int):
        """Block the buyer of an order: the owner picks which identifiers and
        for how long, warned when others share one. Back to ``?next=`` (an
        admin page) or the order."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=order_id)
        buyer = _order_buyer(order)
        back = _safe_next(request) or reverse("admin:shop_order_change", args=[order.pk])
        data = request.POST if request.method == "POST" else None
        form = BuyerBlockForm(data, prefix="block", buyer=buyer, sharers=identifier_sharers(buyer=buyer))
        reason_form = BlockReasonForm(data, prefix="block")
        if data is not None and form.is_valid() and reason_form.is_valid():
            note = reason_form.cleaned_data["note"]
            reason = _("blocked from order %(no)s") % {"no": order.order_no} + (f": {note}" if note else "")
            entries = buyer_block(buyer=buyer, reason=reason, user=request.user, kinds=form.chosen_kinds(),
                                  expires_at=form.expiries())
            self.message_user(request, _("Buyer of order %(no)s blocked: %(what)s.") % {
                "no": order.order_no, "what": _blocked_words(entries)}, messages.SUCCESS)
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "app_label": self.opts.app_label,
            "title": _("Block the buyer of order %(no)s") % {"no": order.order_no}, "subtitle": None,
            "order": order, "form": form, "reason_form": reason_form, "back": back,
        }
        return TemplateResponse(request, "admin/riskctl/listentry/block_buyer.html", context)


def _order_buyer(order: Order) -> BuyerContext:
    """The identifiers the order was placed with; for an order placed without
    a checkout assessment, what the order itself holds."""
    return order_buyer(order_id=order.pk) or BuyerContext(
        email=email_normalise(order.email), ip=order.client_ip or "",
        phone=phone_normalise(order.phone) if order.phone else "")


def _when(moment) -> str:
    return date_format(localtime(moment), "Y-m-d H:i")


def _blocked_words(entries) -> str:
    return ", ".join(
        _("%(kind)s until %(until)s") % {"kind": KIND_WORDS.get(e.kind, e.kind), "until": _when(e.expires_at)}
        if e.expires_at else _("%(kind)s for good") % {"kind": KIND_WORDS.get(e.kind, e.kind)}
        for e in entries)


def _safe_next(request) -> str:
    """``?next=`` when it is a path inside this admin, else ""."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    parts = urlsplit(target)
    if (target and not parts.scheme and not parts.netloc and parts.path.startswith(reverse("admin:index"))
            and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})):
        return target
    return ""
