"""``{{ amount|money:currency }}``: money in the buyer's language (Decimal, two places)."""

from decimal import Decimal

from django import template
from django.utils.formats import number_format
from django.utils.translation import get_language

register = template.Library()


@register.filter
def money(value, currency: str = "CNY") -> str:
    if value in (None, ""):
        return ""
    amount = number_format(Decimal(value), decimal_pos=2, use_l10n=True)
    if (get_language() or "").lower().startswith("zh") and currency == "CNY":
        return f"{amount} 元"
    return f"{amount} {currency}"
