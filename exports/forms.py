"""The export forms: what to export and in which format. ``filters()`` is the
cleaned filter as JSON (stored on the export: its audit, and what its jobs
read). ``initial_from_changelist`` reads the filters of the order or key list
the owner came from, so "Export…" there starts from what the list showed."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

from exports.models import ExportFormat
from exports.selectors import SOLD, UNSOLD
from inventory.models import CardKeyStatus
from shop.models import OrderStatus, Product


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(format="%Y-%m-%d")


class _ExportForm(forms.Form):
    format = forms.ChoiceField(label=_("Format"), choices=ExportFormat.choices, initial=ExportFormat.CSV,
                               widget=forms.RadioSelect)
    date_from = forms.DateField(label=_("From"), required=False, widget=_DateInput())
    date_to = forms.DateField(label=_("To (inclusive)"), required=False, widget=_DateInput())
    product = forms.ModelChoiceField(label=_("Product"), required=False, empty_label=_("All products"),
                                     queryset=Product.objects.order_by("name"))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The last day is before the first."))
        return cleaned

    def _dates(self) -> dict:
        data = self.cleaned_data
        return {
            "date_from": data["date_from"].isoformat() if data.get("date_from") else None,
            "date_to": data["date_to"].isoformat() if data.get("date_to") else None,
            "product": data["product"].pk if data.get("product") else None,
        }


class OrderExportForm(_ExportForm):
    date_field = forms.ChoiceField(
        label=_("Dates are when the order was"), initial="created", widget=forms.RadioSelect,
        choices=[("created", _("placed")), ("paid", _("paid"))],
    )
    statuses = forms.MultipleChoiceField(label=_("Status"), required=False, choices=OrderStatus.choices,
                                         widget=forms.CheckboxSelectMultiple,
                                         help_text=_("None ticked: every status."))
    include_email = forms.BooleanField(
        label=_("Include the buyer's email"), required=False, initial=True,
        help_text=_("Personal data: leave it out when the file goes to someone who does not need it."),
    )
    field_order = ("format", "date_field", "date_from", "date_to", "statuses", "product", "include_email")

    def filters(self) -> dict:
        data = self.cleaned_data
        return {**self._dates(), "date_field": data["date_field"], "statuses": sorted(data["statuses"]),
                "include_email": data["include_email"]}


class KeyExportForm(_ExportForm):
    which = forms.ChoiceField(
        label=_("Keys"), initial=UNSOLD, widget=forms.RadioSelect,
        choices=[(UNSOLD, _("Unsold (in stock)")), (SOLD, _("Sold, with their order numbers"))],
        help_text=_("The dates are when an unsold key was imported, or when a sold key was sold."),
    )
    plaintext = forms.BooleanField(
        label=_("Include the keys in plaintext"), required=False,
        help_text=_("Without it the file shows each key masked. Recorded in the key audit log, key by key."),
    )
    field_order = ("format", "which", "date_from", "date_to", "product", "plaintext")

    def __init__(self, *args, allow_plaintext: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not allow_plaintext:
            del self.fields["plaintext"]

    def filters(self) -> dict:
        return {**self._dates(), "which": self.cleaned_data["which"]}


def _day(value: str, *, before: bool = False) -> date:
    moment = parse_datetime(value.strip())
    if moment is None:
        day = date.fromisoformat(value.strip()[:10])
    else:
        day = timezone.localtime(moment).date() if timezone.is_aware(moment) else moment.date()
    # The list's "before" bound is midnight, exclusive: the last day it shows is the one before.
    return day - timedelta(days=1) if before else day


def initial_from_changelist(*, kind: str, query) -> dict:
    """The export form's initial values from an admin list's query string
    (Django's list filters: ``status__exact``, ``created_at__gte`` / ``__lt``,
    ``product__id__exact``); anything else there is left out."""
    initial: dict = {}
    try:
        if query.get("created_at__gte"):
            initial["date_from"] = _day(query["created_at__gte"])
        if query.get("created_at__lt"):
            initial["date_to"] = _day(query["created_at__lt"], before=True)
    except ValueError:
        pass
    status = query.get("status__exact")
    if kind == "orders" and status in OrderStatus.values:
        initial["statuses"] = [status]
    if kind == "keys":
        if status in (CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED):
            initial["which"] = SOLD
        if (query.get("product__id__exact") or "").isdigit():
            initial["product"] = int(query["product__id__exact"])
    return {name: value for name, value in initial.items() if value is not None}
