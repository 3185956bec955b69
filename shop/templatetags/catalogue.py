"""Tags of the catalogue and product pages."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def absolute_url(path: str) -> str:
    """``path`` (a media or page URL) as the absolute URL link previews need,
    built from SITE_URL, never from the request's Host header."""
    return path if "://" in path else settings.SITE_URL + path
