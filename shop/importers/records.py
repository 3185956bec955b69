"""What an importer reads from another shop, in one shape whatever the shop.

A source adapter (``dujiaoka``, ``acgfaka``) turns that shop's rows into these
records; the writers (``catalogue``, ``history``, ``stock``) know only them.
The coercions accept both a dump's values (text, int, Decimal) and a live
MySQL driver's (datetime, Decimal, int, bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

# A product kind, as issue 23 names them (REMOTE: supplied by another shop, never imported).
UNIQUE, REUSABLE, MANUAL, REMOTE = "unique", "reusable", "manual", "remote"
# What became of a source order, as far as it matters here.
DELIVERED, UNPAID, UNDELIVERED, WAITING, DELETED = "delivered", "unpaid", "undelivered", "waiting", "deleted"

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


@dataclass
class SourceCategory:
    id: int
    name: str
    position: int
    active: bool
    deleted: bool = False


@dataclass
class SourceField:
    """A question a manual product asks its buyer (dujiaoka ``other_ipu_cnf``)."""

    key: str
    label: str
    required: bool
    hint: str = ""  # a fourth part some dujiaoka versions write: the input's placeholder
    type: str = "text"  # text, number or select (``ManualFieldType``)
    choices: list[str] = field(default_factory=list)  # a select's choices
    pattern: str = ""  # a regular expression the answer must match (acg-faka ``regex``)
    pattern_message: str = ""  # what the buyer is told when it does not


@dataclass
class SourceVariant:
    """One choice of a product (acg-faka: a 种类, or a 种类 with SKU options)."""

    key: str  # what names it on the source's keys, orders and coupons (``acgfaka_config.variant_key``)
    name: str
    price: Decimal
    tiers: list[tuple[int, Decimal]] = field(default_factory=list)  # (from quantity, unit price)
    race: str = ""  # its 种类 ("" for none)
    options: dict[str, str] = field(default_factory=dict)  # its SKU option in each group


@dataclass
class SourceProduct:
    id: int
    name: str
    category_id: int | None
    price: Decimal | None
    active: bool
    kind: str = UNIQUE
    description: str = ""
    usage_notes: str = ""
    max_per_order: int = 0  # 0: the shop's default
    tiers: list[tuple[int, Decimal]] = field(default_factory=list)  # (from quantity, unit price)
    created_at: datetime | None = None
    deleted: bool = False
    variants: list[SourceVariant] = field(default_factory=list)  # acg-faka 种类 and SKU options
    variants_unmade: str = ""  # why its choices there are not variants here
    fields: list[SourceField] = field(default_factory=list)  # a manual product's questions
    fields_unread: list[str] = field(default_factory=list)  # its questions that could not be read (why)


@dataclass
class SourceKey:
    id: int
    product_id: int
    text: str
    sold: bool
    reusable: bool = False  # dujiaoka 循环卡密
    unusable: str = ""  # why it is not for sale (deleted, locked…); empty: it is
    variant: str = ""  # the key of the variant it belongs to (acg-faka 种类 / SKU options)


@dataclass
class SourceCoupon:
    id: int
    code: str
    percent: bool
    value: Decimal | None
    product_ids: list[int] | None  # None: every product
    category_ids: list[int] = field(default_factory=list)
    usage_limit: int | None = None
    used_count: int = 0
    expires_at: datetime | None = None
    active: bool = True
    created_at: datetime | None = None
    unusable: str = ""  # why it cannot be brought across as it is
    variants: list[str] | None = None  # limited to these variants (keys) of its one product


@dataclass
class SourceOrder:
    id: int
    order_no: str
    product_id: int
    state: str  # DELIVERED, UNPAID, UNDELIVERED, WAITING, DELETED
    quantity: int
    unit_price: Decimal
    amount: Decimal
    discount: Decimal = Decimal("0.00")
    email: str = ""
    contact: str = ""  # what the buyer left when it was not an email (QQ, phone)
    client_ip: str = ""
    coupon_id: int | None = None
    created_at: datetime | None = None
    paid_at: datetime | None = None
    key_texts: list[str] = field(default_factory=list)  # what was delivered, one key each
    variant: str = ""  # the key of the variant it was for (acg-faka 种类 / SKU options)
    unusable: str = ""  # why it cannot be brought across
    answers: list[tuple[str, str]] = field(default_factory=list)  # a manual order's (label, what the buyer typed)
    content: str = ""  # what staff delivered by hand on a manual order, when the source kept it


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text or ""))


def as_text(value) -> str:
    if value is None or not isinstance(value, (str, bytes, int, Decimal)):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return str(value)


def as_int(value, default: int = 0) -> int:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else default
    except (TypeError, ValueError):
        try:
            return int(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            return default


def as_decimal(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None


def as_datetime(value, tz: ZoneInfo) -> datetime | None:
    """A source timestamp (naive, in the source server's zone) made aware;
    None for NULL, MySQL's zero date, and anything not a date."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = as_text(value).strip()
        if not text or text.startswith("0000"):
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def is_readable(text: str) -> bool:
    """Whether ``text`` is proper Unicode (no byte the dump could not decode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def ini_sections(text: str) -> dict[str, dict[str, str]]:
    """acg-faka's product ``config``: ``[section]`` lines and ``key=value`` lines."""
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def unit_price_tiers(pairs) -> list[tuple[int, Decimal]]:
    """``[(from quantity, unit price)]`` from ``"5" → "3.50"`` pairs; unreadable pairs are left out."""
    tiers = []
    for quantity, price in pairs:
        quantity, price = as_int(str(quantity).strip(), 0), as_decimal(str(price).strip())
        if quantity > 0 and price is not None:
            tiers.append((quantity, price))
    return sorted(tiers)
