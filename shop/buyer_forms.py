"""Forms of the buyer's own requests: back-in-stock emails and sign-in links."""

from django import forms
from django.utils.translation import gettext_lazy as _


class StockAlertForm(forms.Form):
    email = forms.EmailField(
        label=_("Your email"), max_length=254,
        error_messages={"required": _("Enter your email address."), "invalid": _("Enter a valid email address.")},
        widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )


class SignInLinkForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"), max_length=254,
        error_messages={"required": _("Enter your email address."), "invalid": _("Enter a valid email address.")},
        widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )
