"""The owner's Markdown (product descriptions and usage notes) as safe HTML.

Rendered with markdown-it-py (CommonMark; single line breaks kept, since
owners type descriptions like text messages), then cleaned by nh3 with an
allow-list: whatever markup an owner pastes (HTML from another shop, a
script, an ``onerror``, a ``javascript:`` link) the buyer's page gets only
these tags and attributes. Headings are moved down to h3/h4, under the
page's own h1 and h2. Pictures are left out: the product has its own.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = {"p", "br", "strong", "em", "ul", "ol", "li", "a", "code", "pre", "h3", "h4", "blockquote", "hr"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Markdown's h1, h2 and h3+ become the page's h3 and h4.
HEADING_TAGS = {"h1": "h3", "h2": "h3", "h3": "h4", "h4": "h4", "h5": "h4", "h6": "h4"}

_markdown = MarkdownIt("commonmark", {"html": True, "breaks": True})
# Every link becomes a link, and nh3 drops a href whose scheme is not allowed
# (javascript:, data:, vbscript:): the buyer sees the words, never the URL.
_markdown.validateLink = lambda url: True
_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    # A script's or style's text goes with it, not onto the page.
    clean_content_tags={"script", "style"},
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    # Links leave the shop: no window.opener, and no search credit for them.
    link_rel="noopener nofollow",
)


@lru_cache(maxsize=512)
def markdown_html(text: str) -> SafeString:
    """``text`` (Markdown, or HTML) as HTML safe to put in a buyer page.
    Cached per process by content: a product page renders the same text often."""
    if not text or not text.strip():
        return mark_safe("")
    tokens = _markdown.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = HEADING_TAGS.get(token.tag, token.tag)
    html = _markdown.renderer.render(tokens, _markdown.options, {})
    return mark_safe(_cleaner.clean(html).strip())  # noqa: S308 - cleaned by nh3 with the allow-list above
