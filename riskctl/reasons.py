"""Risk facts in the owner's words: an assessment's reasons as sentences
("4 orders from this IP address in the last hour; usually 1"), rules by
label, numbers without exponents and waits as "2 h 5 min".

An assessment stores its reasons as ``{"rule", "points", "detail"}`` with a
detail of ``"<feature> = <value> (<op> <threshold>)"`` for a rule hit; the
sentences are built from that and the rule's current label, so old
assessments read the same way. "Usually" is the median of the feature over
the shop's checkouts of the last 30 days (said so on the page); with fewer
than ``BASELINE_MIN_CHECKOUTS`` of them there is no "usually", only the rule's
own threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.db import connection
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from riskctl.features import FEATURES, IDENT_WORDS, WINDOW_WORDS
from riskctl.models import Assessment, Rule, RuleAction

BASELINE_DAYS = 30
BASELINE_MIN_CHECKOUTS = 5
_DETAIL = re.compile(r"^(?P<feature>\w+) = (?P<value>\S+) \((?P<op>>=|<=|==) (?P<threshold>\S+)\)$")
# Yes/no features: "usually 0" says nothing, their sentence says it all.
_FLAGS = {"disposable_email", "trusted_buyer"}


def number_plain(value, places: int | None = None) -> str:
    """A number as people write it: ``Decimal("2E+2")`` → "200", ``4.0`` →
    "4", ``0.5`` → "0.5"; with ``places``, exactly that many decimals
    ("297.00")."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if places is not None:
        return f"{number.quantize(Decimal(1).scaleb(-places)):f}"
    if number == number.to_integral_value():
        return f"{number.to_integral_value():f}"
    return f"{number.normalize():f}"


def wait_words(span: timedelta) -> str:
    """A wait in words: "45 s", "2 h 5 min", "3 d 4 h"."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return gettext("%(d)d d %(h)d h") % {"d": days, "h": hours}
    if hours:
        return gettext("%(h)d h %(m)d min") % {"h": hours, "m": minutes}
    if minutes:
        return gettext("%(m)d min") % {"m": minutes}
    return gettext("%(s)d s") % {"s": seconds}


# --- rules ----------------------------------------------------------------------------

# The starting rules (migration 0003) in words; a rule an owner adds is
# labelled by its description and explained from its feature.
RULE_TEXTS = {
    "velocity-email-1h": (_("Many orders from one email in an hour"),
                          _("Adds points when the same email places many orders within an hour.")),
    "velocity-ip-1h": (_("Many orders from one IP address in an hour"),
                       _("Adds points when many orders come from one IP address within an hour.")),
    "velocity-device-1h": (_("Many orders from one device in an hour"),
                           _("Adds points when one device places many orders within an hour.")),
    "linked-emails-device": (_("Several emails on one device"),
                             _("Adds points when one device was used with several emails in a day.")),
    "linked-emails-device-farm": (_("An account farm on one device"),
                                  _("Blocks when one device was used with very many emails in a day.")),
    "linked-emails-ip": (_("Many emails from one IP address"),
                         _("Adds points when many emails ordered from one IP address in a day.")),
    "card-testing-ip": (_("Card testing from one IP address"),
                        _("Blocks when many payments from one IP address failed within an hour.")),
    "card-testing-device": (_("Card testing from one device"),
                            _("Blocks when many payments from one device failed within an hour.")),
    "failed-payments-email": (_("Repeated failed payments by one email"),
                              _("Adds points when this email's payments failed several times in a day.")),
    "disposable-email": (_("Throw-away email address"),
                         _("Adds points when the email is from a disposable mailbox provider.")),
    "amount-jump": (_("Far above what this buyer paid before"),
                    _("Adds points when the order is many times the buyer's largest earlier payment.")),
    "new-buyer-bulk": (_("A new buyer buying many keys"),
                       _("Adds points when an email never seen before orders many keys at once.")),
    "disputes": (_("The buyer disputed a payment before"),
                 _("Adds points when this email has a payment dispute (chargeback) on record.")),
    "trusted-buyer": (_("Trusted returning buyer"),
                      _("Takes points off for a buyer with several old delivered orders and no disputes.")),
}
OPERATOR_WORDS = {">=": _("at least"), "<=": _("at most"), "==": _("equal to")}
SPECIAL_RULES = {
    "allow-list": _("On the allow list"),
    "block-list": _("On the block list"),
    "purchase-limit": _("Over a purchase limit"),
    "block-at-payment": _("Would block, but the money is taken"),
}


def feature_label(name: str) -> str:
    info = FEATURES.get(name)
    return str(info.label) if info else name


def rule_label(rule: Rule) -> str:
    texts = RULE_TEXTS.get(rule.code)
    return str(texts[0]) if texts else (rule.description or rule.code)


def rule_help(rule: Rule) -> str:
    texts = RULE_TEXTS.get(rule.code)
    condition = format_lazy(_("Matches when “{feature}” is {op} {threshold}."), feature=feature_label(rule.feature),
                            op=OPERATOR_WORDS.get(rule.operator, rule.operator),
                            threshold=number_plain(rule.threshold))
    return f"{texts[1]} {condition}" if texts else str(condition)


def points_words(points) -> str:
    """What a reason did to the decision: "+25 points", "−50 points", "sends to review"."""
    if isinstance(points, int):
        return ngettext("%(sign)s%(n)d point", "%(sign)s%(n)d points", abs(points)) % {
            "sign": "+" if points >= 0 else "−", "n": abs(points)}
    return {RuleAction.REVIEW: gettext("sends to review"), RuleAction.BLOCK: gettext("blocks"),
            "ALLOW": gettext("allows")}.get(points, str(points))


def _weight(points) -> int:
    if isinstance(points, int):
        return points
    return {"BLOCK": 10_000, "ALLOW": 9_000, "REVIEW": 8_000}.get(points, 0)


# --- facts ----------------------------------------------------------------------------


def _count(value) -> int:
    return int(Decimal(str(value)))


def fact_words(feature: str, value, *, currency: str = "") -> str:
    """One feature's value as a sentence."""
    n = _count(value) if feature not in ("amount", "amount_vs_history", "first_seen_hours") else 0
    if feature.startswith("orders_"):
        _, ident, window = feature.split("_")
        return ngettext("%(n)d order from this %(ident)s in the last %(window)s",
                        "%(n)d orders from this %(ident)s in the last %(window)s", n) % {
            "n": n, "ident": IDENT_WORDS[ident], "window": WINDOW_WORDS[window]}
    if feature.startswith("failed_payments_"):
        ident, window = feature.removeprefix("failed_payments_").split("_")
        return ngettext("%(n)d failed payment by this %(ident)s in the last %(window)s",
                        "%(n)d failed payments by this %(ident)s in the last %(window)s", n) % {
            "n": n, "ident": IDENT_WORDS[ident], "window": WINDOW_WORDS[window]}
    if feature == "emails_per_device_24h":
        return ngettext("%(n)d email used on this device in 24 hours",
                        "%(n)d different emails used on this device in 24 hours", n) % {"n": n}
    if feature == "emails_per_ip_24h":
        return ngettext("%(n)d email ordered from this IP address in 24 hours",
                        "%(n)d different emails ordered from this IP address in 24 hours", n) % {"n": n}
    if feature == "first_seen_hours":
        hours = Decimal(str(value))
        if hours == 0:
            return gettext("This email has never ordered here before")
        return gettext("This email first ordered here %(ago)s ago") % {
            "ago": wait_words(timedelta(hours=float(hours)))}
    if feature == "disposable_email":
        return gettext("The email is a throw-away (disposable) address") if n else \
            gettext("The email is not a throw-away address")
    if feature == "trusted_buyer":
        return gettext("A trusted returning buyer (3 or more old delivered orders, no disputes)") if n else \
            gettext("Not a trusted returning buyer")
    if feature == "delivered_orders":
        return ngettext("%(n)d earlier order delivered to this email",
                        "%(n)d earlier orders delivered to this email", n) % {"n": n}
    if feature == "refunds":
        return ngettext("%(n)d refund on this email's orders", "%(n)d refunds on this email's orders", n) % {"n": n}
    if feature == "disputes":
        return ngettext("%(n)d payment dispute by this email", "%(n)d payment disputes by this email", n) % {"n": n}
    if feature == "resend_requests":
        return ngettext("%(n)d resend request in the last 7 days",
                        "%(n)d resend requests in the last 7 days", n) % {"n": n}
    if feature == "keys_reported":
        return ngettext("%(n)d key reported as not working", "%(n)d keys reported as not working", n) % {"n": n}
    if feature == "amount":
        return gettext("The order costs %(amount)s") % {"amount": f"{number_plain(value, 2)} {currency}".strip()}
    if feature == "quantity":
        return ngettext("%(n)d key in this order", "%(n)d keys in this order", n) % {"n": n}
    if feature == "amount_vs_history":
        if Decimal(str(value)) == 0:
            return gettext("No earlier payment by this email to compare the amount with")
        return gettext("%(x)s times the largest amount this email paid before") % {"x": number_plain(value)}
    if feature == "new_buyer_quantity":
        return ngettext("A new buyer ordering %(n)d key", "A new buyer ordering %(n)d keys", n) % {"n": n}
    return f"{feature_label(feature)}: {number_plain(value)}"


def _value_words(feature: str, value, currency: str) -> str:
    if feature == "amount":
        return f"{number_plain(value, 2)} {currency}".strip()
    if feature == "first_seen_hours":
        return gettext("%(h)s h") % {"h": number_plain(round(Decimal(str(value)), 1))}
    return number_plain(value)


def baselines(*, features: list[str], days: int = BASELINE_DAYS) -> tuple[int, dict[str, Decimal]]:
    """(checkouts counted, {feature: median}) over the checkout assessments
    of the last ``days``: what is usual in this shop. One query."""
    names = sorted({f for f in features if f in FEATURES and f not in _FLAGS})
    if not names:
        return 0, {}
    medians = ", ".join("percentile_cont(0.5) WITHIN GROUP (ORDER BY (features->>%s)::numeric)" for _ in names)
    sql = (f"SELECT count(*), {medians} FROM {Assessment._meta.db_table} "
           "WHERE stage = %s AND created_at >= %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*names, Assessment.Stage.CHECKOUT, timezone.now() - timedelta(days=days)])
        count, *values = cursor.fetchone()
    return count, {name: Decimal(str(v)) for name, v in zip(names, values) if v is not None}


@dataclass(frozen=True)
class ReasonLine:
    """One reason of an assessment, in words."""

    rule: str  # the rule's code
    label: str  # the rule's label
    effect: str  # "+25 points", "sends to review"
    weight: int
    fact: str  # "4 orders from this IP address in the last hour"
    usual: str  # "usually 1" or ""
    basis: str  # where "usually" and the threshold come from

    @property
    def sentence(self) -> str:
        return f"{self.fact}; {self.usual}" if self.usual else self.fact


def reasons_explain(*, reasons: list[dict], currency: str = "",
                    baseline: tuple[int, dict[str, Decimal]] | None = None) -> list[ReasonLine]:
    """An assessment's reasons in the current language, heaviest first
    (hard decisions, then points). ``baseline`` is ``baselines(...)``; left
    out, it is queried."""
    parsed = [(r, _DETAIL.match(str(r.get("detail", "")))) for r in reasons]
    if baseline is None:
        baseline = baselines(features=[m["feature"] for _, m in parsed if m])
    checkouts, medians = baseline
    rules = {rule.code: rule for rule in Rule.objects.filter(code__in=[r["rule"] for r in reasons])}
    lines = []
    for reason, match in parsed:
        code, points = reason["rule"], reason["points"]
        rule = rules.get(code)
        label = rule_label(rule) if rule else str(SPECIAL_RULES.get(code, code))
        usual = basis = ""
        if match:
            feature, value = match["feature"], match["value"]
            fact = fact_words(feature, value, currency=currency)
            threshold = number_plain(match["threshold"], 2 if feature == "amount" else None)
            basis = gettext("the rule flags %(op)s %(threshold)s") % {
                "op": OPERATOR_WORDS.get(match["op"], match["op"]), "threshold": threshold}
            if checkouts >= BASELINE_MIN_CHECKOUTS and feature in medians:
                usual = gettext("usually %(usual)s") % {"usual": _value_words(feature, medians[feature], currency)}
                basis = gettext("usually: the median of %(n)d checkouts in the last %(days)d days; %(rule)s") % {
                    "n": checkouts, "days": BASELINE_DAYS, "rule": basis}
        elif code == "block-at-payment":
            fact = gettext("The score would block this order, but the money is already taken: a person decides")
        elif code in SPECIAL_RULES:
            fact = f"{SPECIAL_RULES[code]}: {reason.get('detail', '')}"
        else:
            fact = str(reason.get("detail", "")) or code
        lines.append(ReasonLine(rule=code, label=label, effect=points_words(points), weight=_weight(points),
                                fact=fact, usual=usual, basis=basis))
    lines.sort(key=lambda line: -line.weight)
    return lines
