"""Past orders of reusable and manual products, brought across as history
like the others (``history``): DELIVERED, nothing sent again.

A reusable product's order (dujiaoka 循环卡密) holds copies of the product's
stock key, as a sale here does (``inventory.services.reusable``). The stock
key is the one still for sale in the source (imported just before the
orders); a key an order delivered that is no longer for sale there comes in
as a stock key too, voided at once: its copies are history, it is never sold
again.

A manual product's order (代充) was delivered by hand in the source: what
staff delivered (acg-faka keeps it; dujiaoka does not, and a note says so)
becomes its line's content, as staff's delivery would here, and the buyer's
answers (dujiaoka keeps them in the order) are sealed onto the line.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from inventory import sealing
from inventory.models import CardKey, CardKeyStatus
from inventory.services import import_batch_drop_if_empty, key_manual_history, key_policy_get, keys_import, keys_void
from inventory.services.reusable import keys_copy
from shop.importers.context import ImportContext
from shop.importers.history import Refused, order_write
from shop.importers.records import SourceOrder
from shop.models import ManualField, OrderLine, Product
from shop.services.manual import manual_answers_save


def reusable_history_import(*, ctx: ImportContext, product: Product, orders: list[SourceOrder]) -> None:
    """Call inside a transaction."""
    rules = key_policy_get(product_id=product.pk).rules

    def fingerprint(text: str) -> str:
        return sealing.secret_fingerprint(rules.normalise(text))

    texts = [text for order in orders for text in order.key_texts]
    stock = dict(CardKey.objects.filter(product=product, source__isnull=True,
                                        fingerprint__in={fingerprint(text) for text in texts})
                 .values_list("fingerprint", "pk"))
    missing = list(dict.fromkeys(text for text in texts if fingerprint(text) not in stock))
    batch_id = None
    if missing:
        batch_id = keys_import(product=product, entries=enumerate(missing, start=1),
                               source=f"import_from {ctx.label}: reusable keys of past orders").batch_id
        stock.update(CardKey.objects.filter(batch_id=batch_id).values_list("fingerprint", "pk"))
    for order in orders:
        stock_ids = [stock.get(fingerprint(text)) for text in order.key_texts]
        _write(ctx=ctx, product=product, order=order,
               deliver=lambda line, at, ids=stock_ids, src=order: _copies_make(ctx=ctx, order=src, line=line, at=at,
                                                                               stock_ids=ids))
    if batch_id is not None:
        fresh = CardKey.objects.filter(batch_id=batch_id, status=CardKeyStatus.AVAILABLE).values_list("pk", flat=True)
        keys_void(key_ids=list(fresh), actor=ctx.actor,
                  reason=f"a reusable key sold in {ctx.label} that is not for sale there any more")
        import_batch_drop_if_empty(batch_id=batch_id)


def _copies_make(*, ctx: ImportContext, order: SourceOrder, line: OrderLine, at, stock_ids: list) -> None:
    if None in stock_ids:
        raise Refused("a key of it was refused by the product's key format")
    detail = f"sold in {ctx.label}, order {order.order_no or order.id}"
    made = keys_copy(copies=[(pk, line.pk, True, detail) for pk in stock_ids], actor=ctx.actor).get(line.pk, [])
    CardKey.objects.filter(pk__in=made).update(reserved_at=at, delivered_at=at)


def manual_history_import(*, ctx: ImportContext, product: Product, orders: list[SourceOrder]) -> None:
    """Call inside a transaction."""
    keys = dict(ManualField.objects.filter(product=product).values_list("label", "key"))
    for order in orders:
        _write(ctx=ctx, product=product, order=order,
               deliver=lambda line, at, src=order: _manual_deliver(ctx=ctx, order=src, line=line, at=at, keys=keys))


def _manual_deliver(*, ctx: ImportContext, order: SourceOrder, line: OrderLine, at, keys: dict[str, str]) -> None:
    number = order.order_no or order.id
    key_manual_history(line_id=line.pk, product_id=line.product_id, at=at, actor=ctx.actor,
                       content=order.content or f"Delivered by hand in {ctx.label} (order {number}).",
                       detail=f"delivered by hand in {ctx.label}, order {number}")
    if order.answers:
        manual_answers_save(line=line, answers=[
            {"key": keys.get(label) or slugify(label)[:40] or f"answer-{n}", "label": label[:100], "value": value}
            for n, (label, value) in enumerate(order.answers, start=1)])


def _write(*, ctx: ImportContext, product: Product, order: SourceOrder, deliver) -> None:
    ctx.tick("orders")
    try:
        with transaction.atomic():
            order_write(ctx=ctx, product=product, order=order, deliver=deliver)
    except Refused as refused:
        ctx.summary["orders"].skip(str(refused))
        ctx.summary.note(f"order {order.order_no or order.id}: {refused}")
        return
    ctx.summary["orders"].new += 1
