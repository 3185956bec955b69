"""acg-faka (异次元发卡, lizhipay/acg-faka) rows as import records.

Its tables, from its kernel/Install/Install.sql, each under the prefix chosen
at install (``acg_`` by default): ``category`` (``sort`` ascending, ``status``
1 on; ``pid`` nests them, flattened here), ``commodity`` (``delivery_way`` 0
automatic, 1 manual; ``shared_id`` set: supplied by another shop; ``config``
its 种类, SKU options and wholesale prices, and ``widget`` a manual product's
form: both read by ``acgfaka_config``; ``maximum`` the most per order;
``leave_message`` the note shown with the keys), ``card`` (keys: ``status``
0 unsold, 1 sold, 2 locked; ``order_id`` the order it went to; ``race`` the
种类, ``sku`` the SKU options), ``coupon`` (``mode`` 0 an amount off, 1 a
share of the price in ``money`` (0.2: 20 %); ``life`` uses left,
``use_life`` uses made; ``commodity_id`` 0 with ``category_id``: that
category's products; ``race``/``sku``: only those choices of its product)
and ``order`` (``status`` 1 paid; ``delivery_status`` 1 delivered; the keys
are the cards whose ``order_id`` names it; a manual order's ``secret`` is
what staff delivered, ``widget`` the buyer's answers; ``contact`` an email,
phone or QQ).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_UP, Decimal
from zoneinfo import ZoneInfo

from shop.importers.acgfaka_config import (
    CommodityConfig,
    config_read,
    coupon_variants,
    row_variant,
    sku_chosen,
    variants_of,
    widget_answers,
    widget_fields,
)
from shop.importers.records import (
    DELIVERED,
    MANUAL,
    REMOTE,
    UNIQUE,
    UNPAID,
    WAITING,
    SourceCategory,
    SourceCoupon,
    SourceKey,
    SourceOrder,
    SourceProduct,
    as_datetime,
    as_decimal,
    as_int,
    as_text,
)

UNSOLD, SOLD, LOCKED = 0, 1, 2
PERCENT_MODE = 1


def _race(row: dict) -> str:
    """The 种类 a card, order or coupon is limited to ("" for none)."""
    return as_text(row.get("race")).strip()


class AcgFaka:
    name = "acg-faka"
    default_prefix = "acg_"
    order_prefix = "AF"  # for an order number that cannot be kept

    def __init__(self, source, *, prefix: str, tz: ZoneInfo):
        self.source, self.prefix, self.tz = source, prefix, tz
        self._configs: dict[int, CommodityConfig] | None = None

    def _configs_load(self) -> None:
        """Every product's config, read before another table's rows are
        streamed (a live MySQL connection reads one result at a time)."""
        if self._configs is None:
            self._configs = {as_int(row["id"]): config_read(as_text(row.get("config")))
                             for row in self._rows("commodity")}

    def _config(self, product_id: int) -> CommodityConfig:
        self._configs_load()
        return self._configs.get(product_id) or CommodityConfig()

    def _variant(self, row: dict) -> tuple[str, str]:
        """The variant a card or order belongs to, and why none when it should."""
        return row_variant(config=self._config(as_int(row.get("commodity_id"))), race=_race(row),
                           sku=sku_chosen(row.get("sku")))

    def _rows(self, table: str) -> Iterator[dict]:
        return self.source.rows(self.prefix + table)

    def categories(self) -> list[SourceCategory]:
        return [SourceCategory(id=as_int(row["id"]), name=as_text(row.get("name")).strip(),
                               position=max(as_int(row.get("sort")), 0), active=as_int(row.get("status")) == 1)
                for row in self._rows("category")]

    def products(self) -> list[SourceProduct]:
        category_on = {category.id: category.active for category in self.categories()}
        products = []
        self._configs = {}
        for row in self._rows("commodity"):
            config = config_read(as_text(row.get("config")))
            self._configs[as_int(row["id"])] = config  # kept: the keys, coupons and orders are read against it
            kind = REMOTE if as_int(row.get("shared_id")) else MANUAL if as_int(row.get("delivery_way")) == 1 else UNIQUE
            category, price = as_int(row.get("category_id")), as_decimal(row.get("price"))
            variants, unmade = variants_of(price=price, config=config) if config.has_variants else ([], "")
            fields, fields_unread = widget_fields(as_text(row.get("widget"))) if kind == MANUAL else ([], [])
            products.append(SourceProduct(
                id=as_int(row["id"]), name=as_text(row.get("name")).strip(),
                category_id=category if category in category_on else None, price=price,
                active=as_int(row.get("status")) == 1 and category_on.get(category, True), kind=kind,
                description=as_text(row.get("description")).strip(),
                usage_notes=as_text(row.get("leave_message")).strip(),
                max_per_order=max(as_int(row.get("maximum")), 0),
                # With 种类 or SKU options the price is the chosen variant's, tiers included.
                tiers=[] if config.has_variants else config.tiers,
                created_at=as_datetime(row.get("create_time"), self.tz),
                variants=variants, variants_unmade=unmade, fields=fields, fields_unread=fields_unread,
            ))
        return products

    def keys(self) -> Iterator[SourceKey]:
        self._configs_load()
        for row in self._rows("card"):
            status = as_int(row.get("status"))
            variant, problem = self._variant(row)
            yield SourceKey(
                id=as_int(row["id"]), product_id=as_int(row.get("commodity_id")), text=as_text(row.get("secret")).strip(),
                sold=status == SOLD, unusable="locked in the source" if status == LOCKED else problem, variant=variant,
            )

    def coupons(self) -> Iterator[SourceCoupon]:
        self._configs_load()
        for row in self._rows("coupon"):
            product, category = as_int(row.get("commodity_id")), as_int(row.get("category_id"))
            percent = as_int(row.get("mode")) == PERCENT_MODE
            money = as_decimal(row.get("money"))
            life, used = max(as_int(row.get("life")), 0), max(as_int(row.get("use_life")), 0)
            yield SourceCoupon(
                id=as_int(row["id"]), code=as_text(row.get("code")).strip(), percent=percent,
                value=(money * 100).quantize(Decimal("0.01")) if percent and money is not None else money,
                product_ids=[product] if product else None if not category else [],
                category_ids=[category] if not product and category else [],
                usage_limit=life + used, used_count=used, expires_at=as_datetime(row.get("expire_time"), self.tz),
                active=as_int(row.get("status")) == 0, created_at=as_datetime(row.get("create_time"), self.tz),
                variants=coupon_variants(config=self._config(product), race=_race(row), sku=sku_chosen(row.get("sku")))
                if product and (_race(row) or sku_chosen(row.get("sku"))) else None,
            )

    def orders(self) -> Iterator[SourceOrder]:
        self._configs_load()
        delivered: dict[int, list[str]] = defaultdict(list)
        for card in self._rows("card"):
            if as_int(card.get("status")) == SOLD and card.get("order_id") is not None:
                delivered[as_int(card["order_id"])].append(as_text(card.get("secret")).strip())
        for row in self._rows("order"):
            order_id, quantity = as_int(row["id"]), as_int(row.get("card_num"))
            paid = as_int(row.get("status")) == 1
            state = UNPAID if not paid else DELIVERED if as_int(row.get("delivery_status")) == 1 else WAITING
            amount = as_decimal(row.get("amount")) or Decimal("0.00")
            # No unit price is kept: the amount over the quantity, rounded up
            # (the line's discount makes up the cents).
            unit = (amount / quantity).quantize(Decimal("0.01"), rounding=ROUND_UP) if quantity > 0 else amount
            contact = as_text(row.get("contact")).strip()
            variant, problem = self._variant(row)
            yield SourceOrder(
                id=order_id, order_no=as_text(row.get("trade_no")).strip(), product_id=as_int(row.get("commodity_id")),
                state=state, quantity=quantity, unit_price=unit, amount=amount,
                discount=unit * max(quantity, 1) - amount,
                email=contact if "@" in contact else "", contact="" if "@" in contact else contact,
                client_ip=as_text(row.get("create_ip")).strip(), coupon_id=as_int(row.get("coupon_id")) or None,
                created_at=as_datetime(row.get("create_time"), self.tz),
                paid_at=as_datetime(row.get("pay_time"), self.tz),
                key_texts=delivered.get(order_id, []) if state == DELIVERED else [], variant=variant,
                unusable=problem, answers=widget_answers(as_text(row.get("widget"))),
                # A manual order's ``secret`` is what staff delivered by hand.
                content=as_text(row.get("secret")).strip() if state == DELIVERED else "",
            )
