"""The forms of the order page's actions: resend, revoke links, refund, replace a key, 补单."""

from django import forms
from django.utils.translation import gettext_lazy as _

from inventory.models import CardKey
from inventory.sealing import SealError
from payments.methods import methods_all


def _key_label(key: CardKey) -> str:
    """A delivered key as staff pick it: its id, product and last characters only."""
    try:
        masked = key.secret_masked
    except SealError:  # sealed under a retired encryption key: still replaceable
        masked = "••••"
    return f"#{key.pk} · {key.product} · {masked}"


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
