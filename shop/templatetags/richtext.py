"""``{{ text|markdown }}``: the owner's Markdown as sanitised HTML (shop.markdown)."""

from html import unescape

from django import template
from django.utils.html import strip_tags

from shop.markdown import markdown_html

register = template.Library()


@register.filter
def markdown(text) -> str:
    return markdown_html(str(text or ""))


@register.filter
def markdown_text(text) -> str:
    """The words of the owner's Markdown on one line, as plain text (for a
    meta description; the template escapes it again)."""
    return " ".join(unescape(strip_tags(markdown_html(str(text or "")))).split())
