"""The one field both code steps ask for."""

from django import forms
from django.utils.translation import gettext_lazy as _


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        strip=True,
        widget=forms.TextInput(attrs={
            "autocomplete": "one-time-code", "autofocus": True, "autocapitalize": "off",
            "autocorrect": "off", "spellcheck": "false", "size": 12,
        }),
    )


class EnrolForm(CodeForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["code"]
        field.label = _("6-digit code from the app")
        field.widget.attrs.update({"inputmode": "numeric", "pattern": r"\d{6}", "maxlength": 6})
