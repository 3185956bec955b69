"""Absolute URLs for the page tags that leave the site (canonical, Open Graph).
Built from settings.SITE_URL, never from the request's Host header, which a
client chooses."""

from django import template
from django.conf import settings
from django.templatetags.static import static

register = template.Library()


@register.simple_tag(takes_context=True)
def canonical_url(context) -> str:
    """This page's address without its query string (a signed link's secret, a filter)."""
    request = context.get("request")
    return settings.SITE_URL + (request.path if request is not None else "/")


@register.simple_tag
def absolute_static(path: str) -> str:
    url = static(path)
    return url if "://" in url else settings.SITE_URL + url
