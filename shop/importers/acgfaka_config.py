"""acg-faka's per-product settings, read into the records' terms.

A commodity's ``config`` is INI-like (its ``App\\Util\\Ini``): ``[category]``
lines ``name=price`` are its 种类, each sold at its own price;
``[category_wholesale]`` lines ``name.5=12`` a 种类's price from 5 pieces;
``[wholesale]`` lines ``5=3`` the product's price from 5 pieces (used only
when it has no 种类); ``[sku]`` lines ``group.option=premium`` its SKU
options, one to choose in every group, each adding its premium (when above 0)
to the unit price. A card, an order and a coupon carry the chosen options as
JSON (``{"画质": "4K"}``); a card sells only for the options it names.

Here each choice a buyer can make there (a 种类, or a 种类 with one option
of every SKU group) is a variant of the product with the price it cost
there, so its keys, past orders and coupons land on the one variant that
sells them at that price.

``widget`` is a manual product's form, a JSON list of
``{cn, name, type, placeholder, regex, error, dict}``: ``type`` text,
password, number, textarea, select, radio, checkbox or custom (a container a
plugin fills, such as a captcha: not a question); ``dict`` the choices,
``label=value,label=value``; ``regex`` what the answer must match (PHP's
``preg_match``, so a search) and ``error`` the message when it does not. An
order keeps the answers as ``{name: {cn, value}}``.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.text import slugify

from shop.importers.records import SourceField, SourceVariant, as_decimal, as_text, ini_sections, unit_price_tiers

# More choices than this on one product are not made into variants (the
# owner is told): a product with 5 groups of 5 options would be 3,125 products.
MAX_VARIANTS = 100


@dataclass
class CommodityConfig:
    races: dict[str, Decimal] = field(default_factory=dict)  # 种类 → unit price
    race_tiers: dict[str, list[tuple[int, Decimal]]] = field(default_factory=dict)
    tiers: list[tuple[int, Decimal]] = field(default_factory=list)  # [wholesale]
    sku: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # group → option → premium

    @property
    def has_variants(self) -> bool:
        return bool(self.races or self.sku)


def config_read(text: str) -> CommodityConfig:
    sections = ini_sections(text)
    config = CommodityConfig(tiers=unit_price_tiers(sections.get("wholesale", {}).items()))
    for name, value in sections.get("category", {}).items():
        if name and (price := as_decimal(value)) is not None:
            config.races[name[:200]] = price
    race_lines: dict[str, list[tuple[str, str]]] = {}
    for dotted, value in sections.get("category_wholesale", {}).items():
        race, _, quantity = dotted.rpartition(".")
        race_lines.setdefault(race, []).append((quantity, value))
    config.race_tiers = {race: unit_price_tiers(lines) for race, lines in race_lines.items()}
    for dotted, value in sections.get("sku", {}).items():
        group, _, option = dotted.partition(".")
        if group and option:
            premium = as_decimal(value)
            config.sku.setdefault(group, {})[option] = premium if premium is not None and premium > 0 else Decimal(0)
    return config


def variant_key(race: str, options: tuple[tuple[str, str], ...] = ()) -> str:
    """What names one choice of a product: its 种类, and its SKU options in the product's group order."""
    return race if not options else "\x1f".join([race, *(f"{group}={option}" for group, option in options)])


def variants_of(*, price: Decimal | None, config: CommodityConfig) -> tuple[list[SourceVariant], str]:
    """Every choice of the product as a variant, and why there are none when
    there are too many to make."""
    races = [(race, race_price, config.race_tiers.get(race, [])) for race, race_price in config.races.items()]
    if not races:
        if price is None:
            return [], ""
        races = [("", price, config.tiers)]
    groups = [[(group, option) for option in options] for group, options in config.sku.items() if options]
    combinations = list(itertools.islice(itertools.product(*groups), MAX_VARIANTS + 1))
    if len(races) * len(combinations) > MAX_VARIANTS:
        return [], (f"{len(races)} 种类 × its SKU options make more than {MAX_VARIANTS} choices: not made into "
                    "variants; its keys and orders are left there")
    variants = []
    for (race, base, tiers), options in itertools.product(races, combinations):
        premium = sum((config.sku[group][option] for group, option in options), Decimal(0))
        name = " · ".join([race, *(f"{group}: {option}" for group, option in options)] if race else
                          [f"{group}: {option}" for group, option in options])
        variants.append(SourceVariant(key=variant_key(race, options), name=name[:200], price=base + premium,
                                      tiers=[(quantity, unit + premium) for quantity, unit in tiers],
                                      race=race, options=dict(options)))
    return variants, ""


def sku_chosen(value) -> dict[str, str]:
    """A card's, order's or coupon's ``sku`` column: ``{group: option}``."""
    try:
        chosen = json.loads(as_text(value) or "null")
    except ValueError:
        return {}
    return {str(group): as_text(option) if not isinstance(option, (int, float)) else str(option)
            for group, option in chosen.items()} if isinstance(chosen, dict) else {}


def row_variant(*, config: CommodityConfig, race: str, sku: dict[str, str]) -> tuple[str, str]:
    """The variant a card or an order of this product belongs to, and why
    it belongs to none ("" if it does). Options of groups the product does
    not have are ignored, as acg-faka ignores them."""
    if not config.sku:
        return race, ""
    options = []
    for group, choices in config.sku.items():
        if not choices:
            continue
        option = sku.get(group)
        if option is None or option not in choices:
            return "", (f"of no {group} option while its product has SKU options: left out" if option is None
                        else f"its {group} {option!r} is not among its product's SKU options: left out")
        options.append((group, option))
    return variant_key(race, tuple(options)), ""


def coupon_variants(*, config: CommodityConfig, race: str, sku: dict[str, str]) -> list[str]:
    """The variants a coupon limited to a 种类 and/or some SKU options is good for."""
    keys = []
    variants, _ = variants_of(price=Decimal(0), config=config)
    for variant in variants:
        if (not race or variant.race == race) and all(variant.options.get(group) == option
                                                      for group, option in sku.items()):
            keys.append(variant.key)
    return keys


_KINDS = {"text": "text", "password": "text", "textarea": "text", "number": "number", "select": "select",
          "radio": "select", "checkbox": "text"}


def widget_fields(text: str) -> tuple[list[SourceField], list[str]]:
    """A manual product's questions, and what could not come across of them."""
    try:
        widgets = json.loads(text or "[]")
    except ValueError:
        return [], [f"its form (widget) is not JSON ({text[:60]!r}): add its questions here by hand"]
    fields, notes = [], []
    for n, widget in enumerate(widgets if isinstance(widgets, list) else [], start=1):
        if not isinstance(widget, dict):
            continue
        kind, label = as_text(widget.get("type")).strip(), as_text(widget.get("cn")).strip()
        if kind == "custom":
            notes.append(f"widget {widget.get('name')!r} is a custom container (e.g. a captcha), not a question: left out")
            continue
        if kind not in _KINDS:
            notes.append(f"widget {label or widget.get('name')!r} of type {kind!r} is not known: add it here by hand")
            continue
        choices = [pair.partition("=")[0].strip() for pair in as_text(widget.get("dict")).split(",") if "=" in pair]
        pattern = as_text(widget.get("regex")).strip()
        try:
            required = bool(pattern) and re.search(pattern, "") is None
        except re.error:
            notes.append(f"the check of {label!r} ({pattern!r}) is not a regular expression here: left out (check those answers by hand)")
            pattern, required = "", False
        if kind == "checkbox":
            notes.append(f"{label!r} lets the buyer tick several of {', '.join(choices)}: here a text answer")
        fields.append(SourceField(
            key=slugify(as_text(widget.get("name")))[:40] or f"field-{n}", label=(label or f"Field {n}")[:100],
            required=required, hint=as_text(widget.get("placeholder")).strip()[:200], type=_KINDS[kind],
            choices=choices if _KINDS[kind] == "select" else [], pattern=pattern[:200],
            pattern_message=as_text(widget.get("error")).strip()[:200]))
    return fields, notes


def widget_answers(text: str) -> list[tuple[str, str]]:
    """An order's answers, ``[(label, value)]``, from ``{name: {cn, value}}``."""
    try:
        answers = json.loads(text or "{}")
    except ValueError:
        return []
    if not isinstance(answers, dict):
        return []
    return [(as_text(answer.get("cn")) or str(name),
             ", ".join(map(as_text, answer.get("value"))) if isinstance(answer.get("value"), list)
             else as_text(answer.get("value")))
            for name, answer in answers.items() if isinstance(answer, dict)]
