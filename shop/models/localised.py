"""The buyer's-language text of a field kept in English and Chinese (``name`` and ``name_zh``)."""

from typing import NamedTuple

from django.utils.translation import get_language


def _localised(obj, field: str) -> str:
    """The Chinese text when the active language is Chinese and it was filled in."""
    if (get_language() or "").lower().startswith("zh"):
        return getattr(obj, f"{field}_zh") or getattr(obj, field)
    return getattr(obj, field)


class LocalisedText(NamedTuple):
    text: str
    lang: str  # of ``text``: "en" or "zh-Hans"


def _localised_either(obj, field: str) -> LocalisedText:
    """``_localised``, and the other language's text when the buyer's side is
    empty (an owner who writes only Chinese still reaches English buyers),
    with the language code of the text returned so the page can mark it."""
    text = _localised(obj, field)
    zh = (get_language() or "").lower().startswith("zh")
    if text:
        return LocalisedText(text, "zh-Hans" if zh and getattr(obj, f"{field}_zh") else "en")
    return LocalisedText(getattr(obj, f"{field}_zh"), "zh-Hans")
