from django import forms
from django.utils.translation import gettext_lazy as _


class CheckoutForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"), max_length=254, help_text=_("Your key is sent here."),
        widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )
    phone = forms.CharField(
        label=_("Phone"), max_length=32, required=False, help_text=_("Optional: we also text the key."),
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    query_password = forms.CharField(
        label=_("Query password"), max_length=128, required=False,
        help_text=_("Optional, at least 6 characters: with your order number and email it opens your order later."),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    coupon = forms.CharField(
        label=_("Coupon code"), max_length=40, required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
    terms = forms.BooleanField(
        label=_("I accept the terms: keys are digital goods and are not refundable once shown."),
        error_messages={"required": _("Please accept the terms to continue.")},
    )

    def __init__(self, *args, max_quantity: int, manual_fields=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["quantity"] = forms.IntegerField(
            label=_("Quantity"), min_value=1, max_value=max_quantity, initial=1,
            widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        )
        # A manual product's questions, as ``field_<key>``. Checked by the
        # checkout (shop.services.manual), as for the API: not required here.
        self.manual_names = {}
        for field in manual_fields:
            name = f"field_{field.key}"
            self.manual_names[field.key] = name
            self.fields[name] = forms.CharField(
                label=field.display_label, required=False, help_text=field.display_help_text,
                max_length=field.max_length or MANUAL_ANSWER_MAX, widget=_manual_widget(field))
        self.order_fields(["quantity", *self.manual_names.values(), "email", "phone", "query_password", "coupon",
                           "terms"])

    def manual_answers(self) -> dict:
        """The answers by field key, as the checkout takes them."""
        return {key: self.cleaned_data.get(name, "") for key, name in self.manual_names.items()}


# The longest answer the page sends (shop.services.manual checks it again).
MANUAL_ANSWER_MAX = 500


def _manual_widget(field):
    required = {"aria-required": "true"} if field.required else {}
    if field.type == "select":
        return forms.Select(choices=[("", "—"), *((c, c) for c in field.choice_list)], attrs=required)
    if field.type == "number":
        return forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", **required})
    return forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false", **required})


class LookupForm(forms.Form):
    order_no = forms.CharField(label=_("Order number"), max_length=20,
                               widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}))
    email = forms.EmailField(label=_("Email"), max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    query_password = forms.CharField(
        label=_("Query password"), max_length=128, required=False,
        help_text=_("The one you chose at checkout. None? Leave it empty and ask for an email link."),
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class KeyReportForm(forms.Form):
    reason = forms.CharField(label=_("What is wrong?"), max_length=500, required=False,
                             widget=forms.TextInput(attrs={"autocomplete": "off"}))
