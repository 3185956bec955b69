"""Forms of the review desk, the block-buyer page and the rule admin."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from riskctl.features import FEATURES
from riskctl.identity import BuyerContext
from riskctl.models import IdentifierKind, Rule
from riskctl.selectors import buyer_identifiers
from riskctl.services import BLOCK_DEFAULT_DURATIONS

NEVER = "never"
# How long a block may last, as the owner picks it; "never" is explicit.
BLOCK_DURATIONS = {
    "1h": (timedelta(hours=1), _("1 hour")),
    "24h": (timedelta(hours=24), _("24 hours")),
    "7d": (timedelta(days=7), _("7 days")),
    "30d": (timedelta(days=30), _("30 days")),
    "90d": (timedelta(days=90), _("90 days")),
    "365d": (timedelta(days=365), _("1 year")),
}
_DURATION_CHOICES = [(key, label) for key, (_span, label) in BLOCK_DURATIONS.items()] + [(NEVER, _("Never expires"))]
KIND_WORDS = {IdentifierKind.EMAIL: _("Email"), IdentifierKind.IP: _("IP address"),
              IdentifierKind.DEVICE: _("Device"), IdentifierKind.PHONE: _("Phone")}


def _default_duration(kind: str) -> str:
    span = BLOCK_DEFAULT_DURATIONS[kind]
    return next(key for key, (duration, _label) in BLOCK_DURATIONS.items() if duration == span)


class BuyerBlockForm(forms.Form):
    """Which of a buyer's identifiers to block, and for how long each. An
    identifier other buyers also used starts unticked, with a warning."""

    def __init__(self, *args, buyer: BuyerContext, sharers: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.identifiers = buyer_identifiers(buyer=buyer)
        self.sharers = sharers
        for kind, value in self.identifiers:
            key = kind.lower()
            self.fields[f"block_{key}"] = forms.BooleanField(
                required=False, initial=not sharers.get(kind), label=KIND_WORDS[kind])
            self.fields[f"until_{key}"] = forms.ChoiceField(
                choices=_DURATION_CHOICES, initial=_default_duration(kind), required=False,
                label=_("How long to block the %(kind)s") % {"kind": KIND_WORDS[kind]})

    @property
    def rows(self) -> list[dict]:
        """One row per identifier, for the template."""
        return [{"kind": kind, "label": KIND_WORDS[kind], "value": value, "block": self[f"block_{kind.lower()}"],
                 "until": self[f"until_{kind.lower()}"], "warning": self.warning(kind)}
                for kind, value in self.identifiers]

    def warning(self, kind: str) -> str:
        n = self.sharers.get(kind, 0)
        if not n:
            return ""
        what = {IdentifierKind.IP: _("this IP address"), IdentifierKind.DEVICE: _("this device"),
                IdentifierKind.PHONE: _("this phone")}[kind]
        return ngettext(
            "%(n)d other buyer ordered from %(what)s in the last 30 days — blocking it may block them too.",
            "%(n)d other buyers ordered from %(what)s in the last 30 days — blocking it may block them too.",
            n) % {"n": n, "what": what}

    def clean(self):
        data = super().clean()
        if not self.chosen_kinds():
            raise forms.ValidationError(_("Tick at least one identifier to block."), code="nothing_chosen")
        return data

    def chosen_kinds(self) -> list[str]:
        return [kind for kind, _value in self.identifiers if self.cleaned_data.get(f"block_{kind.lower()}")]

    def expiries(self) -> dict:
        """{kind: expires_at or None (never)} of the chosen identifiers."""
        now = timezone.now()
        found = {}
        for kind in self.chosen_kinds():
            choice = self.cleaned_data.get(f"until_{kind.lower()}") or _default_duration(kind)
            found[kind] = None if choice == NEVER else now + BLOCK_DURATIONS[choice][0]
        return found


class DecisionNoteForm(forms.Form):
    note = forms.CharField(label=_("Note"), widget=forms.Textarea(attrs={"rows": 2}),
                           help_text=_("Why; kept with the decision."))

    def __init__(self, *args, required: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["note"].required = required


class BlockReasonForm(forms.Form):
    note = forms.CharField(label=_("Reason"), required=False, max_length=150,
                           widget=forms.TextInput(attrs={"size": 40}),
                           help_text=_("Kept with the block entries, with the order number."))


class FeatureSelect(forms.Select):
    """The feature choices, each option carrying its help text for
    riskctl/rule_form.js to show under the field."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in FEATURES:
            option["attrs"]["data-help"] = str(FEATURES[value].help)
        return option


def feature_choices() -> list:
    groups: dict[str, list] = {}
    for name, info in FEATURES.items():
        groups.setdefault(str(info.group), []).append((name, str(info.label)))
    return [(group, choices) for group, choices in groups.items()]


class RuleForm(forms.ModelForm):
    feature = forms.ChoiceField(label=_("Signal"), choices=feature_choices, widget=FeatureSelect)

    class Meta:
        model = Rule
        fields = ("code", "description", "feature", "operator", "threshold", "action", "points", "active", "shadow")
        labels = {"code": _("Code"), "description": _("Description"), "operator": _("Comparison"),
                  "threshold": _("Threshold"), "action": _("What it does"), "points": _("Points"),
                  "active": _("Active"), "shadow": _("Shadow (try out)")}
        help_texts = {"code": _("A short unique name, used in the assessments' records."),
                      "description": _("What the rule catches, in your words."),
                      "threshold": _("The number the signal is compared with, e.g. 5 or 200.00."),
                      "points": _("Added to the score when it matches (may be negative)."),
                      "shadow": _("Evaluate and log, but do not act.")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.initial.get("feature") or self.data.get("feature")
        info = FEATURES.get(current)
        self.fields["feature"].help_text = info.help if info else _("Pick a signal to see what it means.")
