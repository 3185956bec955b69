"""dujiaoka (独角数卡, assimon/dujiaoka) rows as import records.

Its tables, from its database/sql/install.sql: ``goods_group`` (categories,
``ord`` larger first), ``goods`` (``type`` 1 automatic, 2 manual;
``wholesale_price_cnf`` lines ``5=3`` meaning from 5 pieces 3 each;
``buy_limit_num`` the most per order, 0 no limit; ``other_ipu_cnf`` a manual
product's questions, one a line ``key=label=true|false``: true required, as
its admin's help text says), ``carmis`` (keys: ``status`` 1 unsold, 2 sold;
``is_loop`` 1 a reusable key: a product with one is reusable here), ``coupons`` (a fixed
``discount``; ``ret`` the uses left; usable only on the goods linked in
``coupons_goods``) and ``orders`` (``status`` -1 expired, 1 unpaid, 2 waiting
for staff, 3 being handled, 4 completed, 5 failed, 6 abnormal: paid but short
of keys; a completed automatic order's ``info`` is its keys, one a line; a
manual order's is the buyer's answers, ``label:value`` a line).
Every table keeps deleted rows (``deleted_at``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from shop.importers.records import (
    DELETED,
    DELIVERED,
    MANUAL,
    REUSABLE,
    UNDELIVERED,
    UNIQUE,
    UNPAID,
    WAITING,
    SourceCategory,
    SourceCoupon,
    SourceField,
    SourceKey,
    SourceOrder,
    SourceProduct,
    as_datetime,
    as_decimal,
    as_int,
    as_text,
    unit_price_tiers,
)

_FIELD_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
_ORDER_STATES = {-1: UNPAID, 1: UNPAID, 2: WAITING, 3: WAITING, 4: DELIVERED, 5: UNDELIVERED, 6: UNDELIVERED}
MANUAL_TYPE = 2
SOLD = 2


class Dujiaoka:
    name = "dujiaoka"
    default_prefix = ""
    order_prefix = "DJ"  # for an order number that cannot be kept

    def __init__(self, source, *, prefix: str, tz: ZoneInfo):
        self.source, self.prefix, self.tz = source, prefix, tz
        self._groups: dict[int, bool] | None = None

    def _rows(self, table: str) -> Iterator[dict]:
        return self.source.rows(self.prefix + table)

    def categories(self) -> list[SourceCategory]:
        rows = list(self._rows("goods_group"))
        # Larger ``ord`` first there; a lower position first here.
        rows.sort(key=lambda row: (row.get("deleted_at") is not None, -as_int(row.get("ord")), as_int(row.get("id"))))
        self._groups = {as_int(row["id"]): as_int(row.get("is_open"), 1) == 1 for row in rows
                        if row.get("deleted_at") is None}
        return [SourceCategory(id=as_int(row["id"]), name=as_text(row.get("gp_name")).strip(),
                               position=10 * (n + 1), active=as_int(row.get("is_open"), 1) == 1,
                               deleted=row.get("deleted_at") is not None)
                for n, row in enumerate(rows)]

    def products(self) -> list[SourceProduct]:
        if self._groups is None:
            self.categories()
        reusable = {as_int(row.get("goods_id")) for row in self._rows("carmis")
                    if as_int(row.get("is_loop")) == 1 and row.get("deleted_at") is None}
        products = []
        for row in self._rows("goods"):
            product_id, group = as_int(row["id"]), as_int(row.get("group_id"))
            kind = MANUAL if as_int(row.get("type"), 1) == MANUAL_TYPE else REUSABLE if product_id in reusable else UNIQUE
            prompt = as_text(row.get("buy_prompt")).strip()
            description = "\n\n".join(p for p in (as_text(row.get("description")).strip(), prompt) if p)
            products.append(SourceProduct(
                id=product_id, name=as_text(row.get("gd_name")).strip(), category_id=group if group in self._groups else None,
                price=as_decimal(row.get("actual_price")), kind=kind,
                active=as_int(row.get("is_open"), 1) == 1 and self._groups.get(group, True),
                description=description or as_text(row.get("gd_description")).strip(),
                max_per_order=max(as_int(row.get("buy_limit_num")), 0),
                tiers=unit_price_tiers(line.split("=", 1) for line in as_text(row.get("wholesale_price_cnf")).splitlines()
                                       if line.count("=") == 1),
                created_at=as_datetime(row.get("created_at"), self.tz), deleted=row.get("deleted_at") is not None,
                **(_fields(as_text(row.get("other_ipu_cnf"))) if kind == MANUAL else {}),
            ))
        return products

    def keys(self) -> Iterator[SourceKey]:
        for row in self._rows("carmis"):
            yield SourceKey(
                id=as_int(row["id"]), product_id=as_int(row.get("goods_id")), text=as_text(row.get("carmi")).strip(),
                sold=as_int(row.get("status"), 1) == SOLD, reusable=as_int(row.get("is_loop")) == 1,
                unusable="deleted in the source" if row.get("deleted_at") is not None else "",
            )

    def coupons(self) -> Iterator[SourceCoupon]:
        goods: dict[int, list[int]] = defaultdict(list)
        for link in self._rows("coupons_goods"):
            goods[as_int(link.get("coupons_id"))].append(as_int(link.get("goods_id")))
        for row in self._rows("coupons"):
            coupon_id = as_int(row["id"])
            left = max(as_int(row.get("ret")), 0)
            unusable = ""
            if row.get("deleted_at") is not None:
                unusable = "deleted in the source"
            elif not goods.get(coupon_id):
                unusable = "linked to no product in the source (usable on none there)"
            yield SourceCoupon(
                id=coupon_id, code=as_text(row.get("coupon")).strip(), percent=False,
                value=as_decimal(row.get("discount")), product_ids=sorted(set(goods.get(coupon_id, []))),
                usage_limit=left, used_count=0, active=as_int(row.get("is_open"), 1) == 1,
                created_at=as_datetime(row.get("created_at"), self.tz), unusable=unusable,
            )

    def orders(self) -> Iterator[SourceOrder]:
        for row in self._rows("orders"):
            state = _ORDER_STATES.get(as_int(row.get("status")), UNDELIVERED)
            if row.get("deleted_at") is not None:
                state = DELETED
            automatic = as_int(row.get("type"), 1) != MANUAL_TYPE
            info = as_text(row.get("info")).replace("\r\n", "\n")
            discount = (as_decimal(row.get("coupon_discount_price")) or 0) + (
                as_decimal(row.get("wholesale_discount_price")) or 0)
            email = as_text(row.get("email")).strip()
            yield SourceOrder(
                id=as_int(row["id"]), order_no=as_text(row.get("order_sn")).strip(),
                product_id=as_int(row.get("goods_id")), state=state, quantity=as_int(row.get("buy_amount")),
                unit_price=as_decimal(row.get("goods_price")) or as_decimal(0), discount=as_decimal(discount),
                amount=as_decimal(row.get("actual_price")) or as_decimal(0),
                email=email if "@" in email else "", contact="" if "@" in email else email,
                client_ip=as_text(row.get("buy_ip")).strip(), coupon_id=as_int(row.get("coupon_id")) or None,
                created_at=as_datetime(row.get("created_at"), self.tz),
                # dujiaoka keeps no payment time: completing the order is its last update.
                paid_at=as_datetime(row.get("updated_at"), self.tz),
                key_texts=[line.strip() for line in info.split("\n") if line.strip()]
                if automatic and state == DELIVERED else [],
                answers=[] if automatic else [(label.strip(), value.strip()) for label, _, value in
                                              (line.partition(":") for line in info.split("\n") if ":" in line)],
            )


def _fields(config: str) -> dict:
    """A manual product's questions from ``other_ipu_cnf``: ``key=label=true|false``
    lines, with an optional fourth part, the input's hint (``account=账号=true=请输入账号``,
    as dujiaoka's admin describes the field); other lines are reported, not guessed."""
    fields, unread = [], []
    for raw in config.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        parts = [part.strip() for part in line.split("=")]
        if (len(parts) in (3, 4) and _FIELD_KEY.fullmatch(parts[0]) and parts[1]
                and parts[2].lower() in ("true", "false")):
            fields.append(SourceField(key=parts[0].lower(), label=parts[1][:100],
                                      required=parts[2].lower() == "true", hint=(parts[3:] or [""])[0][:200]))
        else:
            unread.append(f"the question {line!r} could not be read (not key=label=true|false): add it here by hand")
    return {"fields": fields, "fields_unread": unread}
