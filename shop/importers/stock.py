"""The keys still for sale in the other shop, brought into stock here.

They go through ``keys_import`` like any import: checked against the
product's key format, sealed, fingerprinted, with every duplicate reported
(within the source, of a key in stock here, or of a key sold on a past
order: "already sold"). Each product's keys land in an import batch named
after the source, and each key's ``import_line`` is its id there: a re-run
skips the ids it finds in those batches (a key refused as a duplicate is not
stored, so a re-run reports it again, still as a duplicate).

Keys are read in the source's order and handed over per product in slices,
so memory stays flat however large the key table. A reusable product's keys
(dujiaoka 循环卡密) are read in a pass of their own before the past orders,
whose keys are copies of them; the other keys after the orders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction

from inventory.models import CardKey
from inventory.services import import_batch_drop_if_empty, keys_import
from shop.importers.context import ImportContext, product_target
from shop.importers.records import MANUAL, REMOTE, REUSABLE, SourceKey, is_readable
from shop.models import Product

SLICE = 20_000
LINE_MAX = 2**31 - 1  # import_line is an int column


def stock_batch_source(label: str) -> str:
    return f"import_from {label}: keys for sale (line = key id there)"


def keys_import_unsold(*, ctx: ImportContext, keys: Iterable[SourceKey], reusable: bool = False) -> None:
    """The keys of reusable products (``reusable``) or of the others."""
    tally = ctx.summary["keys"]
    pending: dict[int, list[tuple[int, str]]] = defaultdict(list)
    seen: dict[int, set[int]] = {}
    mixed: dict[int, int] = defaultdict(int)  # reusable product → its keys that are not reusable
    with_variants = {product_id for product_id, _ in ctx.variants}
    for key in keys:
        kind = ctx.kinds.get(key.product_id)
        if (kind == REUSABLE) != reusable:
            continue
        ctx.tick("keys")
        if key.sold:
            tally.skip("sold in the source (they come with their orders)")
        elif (problem := _key_problem(ctx=ctx, key=key, kind=kind)):
            tally.skip(problem)
        elif not key.variant and key.product_id in with_variants:
            # Here a product with variants is sold only through them: the key would never sell.
            tally.skip("of no 种类 while its product has 种类 (its variants here): left out")
        elif kind == REUSABLE and not key.reusable:
            tally.skip("not reusable (not 循环) while its product has reusable keys: left out, see details")
            mixed[key.product_id] += 1
        elif (product_id := product_target(ctx=ctx, product_id=key.product_id, variant=key.variant)) is None:
            tally.skip("its 种类 or SKU options are not among its product's variants (or were not imported)")
        else:
            if product_id not in seen:
                seen[product_id] = set(CardKey.objects.filter(
                    product_id=product_id, batch__source=stock_batch_source(ctx.label)).values_list("import_line", flat=True))
            if key.id in seen[product_id]:
                tally.already += 1
                continue
            pending[product_id].append((key.id, key.text))
            if len(pending[product_id]) >= SLICE:
                _stock_add(ctx=ctx, product_id=product_id, entries=pending.pop(product_id))
    for product_id, entries in pending.items():
        _stock_add(ctx=ctx, product_id=product_id, entries=entries)
    for source_id, count in mixed.items():
        ctx.summary.note(f"product {source_id} has reusable (循环) and {count} unsold one-buyer keys: it came as "
                         "reusable with its reusable keys only; sell the others as a unique product of their own")


def _key_problem(*, ctx: ImportContext, key: SourceKey, kind: str | None) -> str:
    if key.unusable:
        return key.unusable
    if kind is None:
        return "its product is not in the source (or was deleted there)"
    if kind == REMOTE:
        return "its product was supplied by another shop"
    if kind == MANUAL:
        return "its product is manual (人工处理/代充): it sells no keys"
    if key.product_id not in ctx.products:
        return "its product was not imported (or was deleted here)"
    if not key.text:
        return "blank"
    if not is_readable(key.text):
        return "not UTF-8 text"
    if not 0 < key.id <= LINE_MAX:
        return "its id does not fit an import line"
    return ""


def _stock_add(*, ctx: ImportContext, product_id: int, entries: list[tuple[int, str]]) -> None:
    tally = ctx.summary["keys"]
    product = Product.objects.get(pk=product_id)
    with transaction.atomic():
        report = keys_import(product=product, entries=entries, source=stock_batch_source(ctx.label))
        import_batch_drop_if_empty(batch_id=report.batch_id)
    tally.new += report.added
    tally.duplicates += report.duplicates
    if report.invalid:
        tally.skip("refused by the product's key format", report.invalid)
    for issue in report.issues:
        detail = issue.detail.replace("same key as line ", "same key as key id ")
        ctx.summary.note(f"key id {issue.line} of {product.slug}: {issue.code} {detail}")
