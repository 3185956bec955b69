"""What an import cannot bring across yet, counted and reported: acg-faka's
product variants (种类 / SKU, issue 23 point 5).

The shop has variants (``Product.parent``), but an acg-faka product's 种类 /
SKU are not mapped onto them yet: its keys, orders and coupons limited to
one variant would land on the wrong price, so an import counts them, writes
nothing, and says so. The product itself comes across with its base price
and its keys that belong to no variant. Reusable keys and manual products,
once counted here too, are imported now (``catalogue``, ``stock``,
``history_kinds``).
"""

from __future__ import annotations

from shop.importers.report import ImportSummary

VARIANTS = "variants"


def variants_not_imported(*, summary: ImportSummary, entity: str, count: int = 1) -> None:
    """A key, order or coupon of one variant (种类 / SKU) of a product."""
    summary.pending_add(VARIANTS, title="product variants (种类/SKU)", entity=entity, count=count,
                        needs="acg-faka variants are not mapped onto this shop's variants yet (issue 23 point 5)")
