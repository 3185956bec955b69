"""Kinds of product the shop cannot hold yet (issue 23, points 1 and 2).

dujiaoka's reusable keys (循环卡密, ``is_loop``), manual products (人工处理 /
代充: dujiaoka ``type = 2``, acg-faka ``delivery_way = 1``) and acg-faka's
product variants (种类 / SKU) have no model here yet. Bringing them across
as unique keys would be wrong (a reusable key sold once; a buyer's input
taken for a key), so an import counts them, writes nothing, and says so.

One function per kind, each called for the kind's products, keys and
orders: when the kind lands, its function becomes the importer of it and
``KIND_IMPORTERS`` sends the rows there.
"""

from __future__ import annotations

from shop.importers.records import MANUAL, REUSABLE
from shop.importers.report import ImportSummary

VARIANTS = "variants"


def reusable_not_imported(*, summary: ImportSummary, entity: str, count: int = 1) -> None:
    """A product with reusable keys, one of its keys or orders."""
    summary.pending_add(REUSABLE, title="reusable keys (循环卡密)", entity=entity, count=count,
                        needs="needs product kind reusable (issue 23 point 1)")


def manual_not_imported(*, summary: ImportSummary, entity: str, count: int = 1) -> None:
    """A manual (人工处理 / 代充) product or one of its orders."""
    summary.pending_add(MANUAL, title="manual products (人工处理/代充)", entity=entity, count=count,
                        needs="needs product kind manual (issue 23 point 1)")


def variants_not_imported(*, summary: ImportSummary, entity: str, count: int = 1) -> None:
    """A key, order or coupon of one variant (种类 / SKU) of a product; the
    product itself comes across with its base price and its other keys."""
    summary.pending_add(VARIANTS, title="product variants (种类/SKU)", entity=entity, count=count,
                        needs="needs variants (issue 23 point 2)")


KIND_IMPORTERS = {REUSABLE: reusable_not_imported, MANUAL: manual_not_imported}
