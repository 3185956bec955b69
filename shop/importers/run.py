"""One import from another shop, from start to end (``manage.py import_from``).

In dependency order: categories, products, coupons, the keys of reusable
products (their past orders hold copies of them), past orders (with the
keys they delivered), then the other keys still for sale, so that a key for sale
there that was also sold on a past order is reported as "already sold".
Each step commits on its own (a product's history in one transaction), so an
interrupted run is resumed by running it again. A dry run does all of it
inside one transaction and rolls it back: its report is what the real run
would do, and nothing is written (no on-commit hook runs either).
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction

from shop.importers.acgfaka import AcgFaka
from shop.importers.catalogue import categories_import, coupons_import, products_import
from shop.importers.context import ImportContext
from shop.importers.dujiaoka import Dujiaoka
from shop.importers.history import orders_import
from shop.importers.records import REUSABLE
from shop.importers.report import ImportSummary
from shop.importers.stock import keys_import_unsold

SOURCES = {"dujiaoka": Dujiaoka, "acg-faka": AcgFaka}


def shop_import(*, kind: str, source, prefix: str | None = None, label: str = "", timezone: str = "",
                dry_run: bool = False, progress: Callable[[str, int], None] | None = None) -> ImportSummary:
    """Bring the shop in ``source`` (a DumpSource or MysqlSource) across.
    ``kind``: "dujiaoka" or "acg-faka"; ``prefix``: its table prefix (default:
    that shop's own); ``label``: its name here (default: ``kind``; give two
    shops of one kind two names); ``timezone``: its server's (default: ours)."""
    adapter = SOURCES[kind](source, prefix=adapter_prefix(kind, prefix),
                            tz=ZoneInfo(timezone or settings.TIME_ZONE))
    summary = ImportSummary(source=label or kind, dry_run=dry_run)
    ctx = ImportContext(label=label or kind, summary=summary, currency=settings.SHOP_CURRENCY,
                        order_prefix=adapter.order_prefix, progress=progress)
    if not dry_run:
        _steps(ctx=ctx, adapter=adapter)
        return summary
    with transaction.atomic():
        _steps(ctx=ctx, adapter=adapter)
        transaction.set_rollback(True)
    return summary


def adapter_prefix(kind: str, prefix: str | None) -> str:
    return SOURCES[kind].default_prefix if prefix is None else prefix


def _steps(*, ctx: ImportContext, adapter) -> None:
    categories_import(ctx=ctx, categories=adapter.categories())
    products_import(ctx=ctx, products=adapter.products())
    coupons_import(ctx=ctx, coupons=adapter.coupons())
    if REUSABLE in ctx.kinds.values():
        keys_import_unsold(ctx=ctx, keys=adapter.keys(), reusable=True)
    orders_import(ctx=ctx, orders=adapter.orders())
    keys_import_unsold(ctx=ctx, keys=adapter.keys())
