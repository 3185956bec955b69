"""What an import cannot bring across yet, counted and reported: acg-faka's
SKU options (``[sku]`` in a product's config, ``sku`` on its cards and orders).

An SKU option adds to the price of a 种类 or of the product; the shop's
variants have one price each and no options on top, so a key or order of an
SKU option would land on the wrong price: an import counts them, writes
nothing, and says so. acg-faka's 种类, dujiaoka's reusable keys and manual
products, once counted here too, are imported now (``catalogue``, ``stock``,
``history``, ``history_kinds``).
"""

from __future__ import annotations

from shop.importers.report import ImportSummary

SKU = "sku"


def sku_not_imported(*, summary: ImportSummary, entity: str, count: int = 1) -> None:
    """A key or order of one SKU option of a product."""
    summary.pending_add(SKU, title="product SKU options (SKU)", entity=entity, count=count,
                        needs="acg-faka's SKU options have no counterpart here yet")
