"""The key email's templates, rendered once per template, language and number
of keys, then filled in for each message.

A template is rendered once with stand-ins whose values are markers; the
output, cut at the markers, is a skeleton that each message fills with its own
values (the order number, its link, each key's product name and secret),
escaped where the template escaped them. The stand-ins offer what the shipped
templates read: ``order.order_no``, ``order.language``, ``order.link_version``
(for ``{% order_link %}``), ``key.product.display_name``, ``key.secret``, and
the shop's name. A template that reads anything else, changes a value with a
filter, or whose skeleton does not give the first message it serves exactly
what rendering that message gives, is rendered per message as before: an
owner's own template keeps working, only slower.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import weakref
from dataclasses import dataclass

from django.template import engines
from django.utils import translation
from django.utils.html import conditional_escape

logger = logging.getLogger(__name__)

_OPEN, _CLOSE = "\ue000", "\ue001"
# A marker carries an "&": escaped, it reads "&amp;", so the skeleton knows
# whether the template escaped each place. Its name is of mixed case: a filter
# that changes case (upper, lower, title, capfirst) breaks it, and the skeleton
# is refused.
_MARKER = re.compile(f"{_OPEN}([A-Za-z0-9]+)(&amp;|&){_CLOSE}")
ORDER_NO, LINK = "oRderNo", "lInk"
_LINK_TEMPLATE = "{% load orderlinks %}{% order_link order %}"


def _marker(name: str) -> str:
    return f"{_OPEN}{name}&{_CLOSE}"


def _name(i: int) -> str:
    return f"pRoduct{i}"


def _secret(i: int) -> str:
    return f"sEcret{i}"


class _Reads:
    """What rendering with the stand-ins read: anything unexpected taints the skeleton."""

    def __init__(self):
        self.tainted = False
        self.name_languages: set[str | None] = set()


class _StandIn:
    def __init__(self, reads: _Reads, **values):
        self._reads = reads
        self.__dict__.update(values)

    def __getattr__(self, name):  # only called for what the stand-in does not offer
        self._reads.tainted = True
        raise AttributeError(name)


class _StandInProduct(_StandIn):
    def __init__(self, reads: _Reads, index: int):
        super().__init__(reads)
        self._index = index

    @property
    def display_name(self) -> str:
        # The name is the product's in the language active where the template reads it.
        self._reads.name_languages.add(translation.get_language())
        return _marker(_name(self._index))


@dataclass(frozen=True)
class Skeleton:
    """Literal text and slots, alternating: ``parts[1::2]`` are (slot, escaped)."""

    parts: tuple
    name_language: str | None

    def fill(self, values: dict[str, str]) -> str:
        out = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                out.append(part)
            else:
                slot, escaped = part
                value = values[slot]
                out.append(conditional_escape(value) if escaped else value)
        return "".join(out)


_UNUSABLE = object()
# shop.models.ProductKind.MANUAL (delivery sits below shop and does not import it).
MANUAL_KIND = "manual"
# Per compiled template (the cached loader keeps one per process; with DEBUG's
# loaders each get_template is a new one, so an edited template is read again):
# {(language, number of keys, shop name): Skeleton or _UNUSABLE}.
_skeletons: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@functools.cache
def _link_template():
    return engines["django"].from_string(_LINK_TEMPLATE)


def _link(order) -> str:
    return _link_template().render({"order": order})


def _skeleton_build(template, *, language: str, keys: int, shop_name: str, manual: bool) -> Skeleton | None:
    reads = _Reads()
    order = _StandIn(reads, order_no=_marker(ORDER_NO), language=language, link_version=0)
    stand_ins = [_StandIn(reads, product=_StandInProduct(reads, i), secret=_marker(_secret(i))) for i in range(keys)]
    output = template.render({"order": order, "keys": stand_ins, "shop_name": shop_name, "manual": manual})
    link = _link(order)
    output = output.replace(link, _marker(LINK))
    if reads.tainted or len(reads.name_languages) > 1 or "%EE%80%80" in output:
        return None
    pieces = _MARKER.split(output)
    known = {ORDER_NO, LINK, *map(_name, range(keys)), *map(_secret, range(keys))}
    parts = []
    for index in range(0, len(pieces), 3):
        literal = pieces[index]
        if _OPEN in literal or _CLOSE in literal:
            return None  # a marker a filter changed
        parts.append(literal)
        if index + 1 < len(pieces):
            slot, amp = pieces[index + 1], pieces[index + 2]
            if slot not in known:
                return None
            # The link is the tag's output (already escaped as the tag escapes it); the others are values.
            parts.append((slot, amp == "&amp;" and slot != LINK))
    return Skeleton(parts=tuple(parts), name_language=next(iter(reads.name_languages), None))


class _Values:
    """One message's slot values, computed once for its three templates."""

    def __init__(self, *, order, keys: list):
        self.order, self.keys = order, keys
        self.link: str | None = None
        self.by_language: dict[str | None, dict[str, str]] = {}

    def for_skeleton(self, skeleton: Skeleton) -> dict[str, str]:
        values = self.by_language.get(skeleton.name_language)
        if values is None:
            values = {ORDER_NO: str(self.order.order_no)}
            with translation.override(skeleton.name_language):
                for i, key in enumerate(self.keys):
                    values[_name(i)] = str(key.product.display_name)
                    values[_secret(i)] = str(key.secret)
            self.by_language[skeleton.name_language] = values
        if self.link is None and any(part[0] == LINK for part in skeleton.parts[1::2]):
            self.link = _link(self.order)
        if self.link is not None:
            values[LINK] = self.link
        return values


def templates_render(templates: dict, *, order, keys: list, shop_name: str) -> dict[str, str]:
    """Each of ``templates`` (name: a ``get_template`` result) rendered for
    ``order`` and its ``keys``: the same text as ``template.render({"order",
    "keys", "shop_name", "manual"})``, from the skeleton of its language,
    number of keys and ``manual`` (what staff delivered by hand for a manual
    product, not a key: the subject says so)."""
    values = _Values(order=order, keys=keys)
    return {name: _render(template, values=values, shop_name=shop_name) for name, template in templates.items()}


def _render(template, *, values: _Values, shop_name: str) -> str:
    order, keys = values.order, values.keys
    manual = bool(keys) and all(key.product.kind == MANUAL_KIND for key in keys)
    context = {"order": order, "keys": keys, "shop_name": shop_name, "manual": manual}
    compiled = getattr(template, "template", template)
    cache_key = (order.language, len(keys), shop_name, manual)
    with _lock:
        per_template = _skeletons.setdefault(compiled, {})
        skeleton = per_template.get(cache_key)
    if skeleton is _UNUSABLE:
        return template.render(context)
    if skeleton is not None:
        return skeleton.fill(values.for_skeleton(skeleton))
    built = _skeleton_build(template, language=order.language, keys=len(keys), shop_name=shop_name, manual=manual)
    rendered = template.render(context)
    if built is None or built.fill(values.for_skeleton(built)) != rendered:
        logger.warning("%s: rendered per message (it reads more than the key email's stand-ins offer)",
                       getattr(compiled, "origin", compiled))
        built = _UNUSABLE
    with _lock:
        per_template[cache_key] = built
    return rendered
