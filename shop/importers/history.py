"""Past orders, brought across as history: DELIVERED, with the keys they
delivered in the other shop, and nothing sent again.

An order comes across only when it was paid and delivered there and each of
its keys can be accounted for: that is what keeps ``manage.py audit`` clean
(invariant 2: a delivered order's line holds exactly its quantity of keys;
invariant 1: no key on two lines). An order paid but never delivered there
(dujiaoka's "abnormal", acg-faka's undelivered) is left for the owner to
settle there: brought here as AWAITING_STOCK, the next restock would deliver
it. Unpaid and expired orders are not history worth keeping.

A product's orders go in one transaction: their keys are imported (sealed,
through ``keys_import``: the same checks, fingerprints and duplicate report
as any import), each order is written with its line and timeline, and its
keys go from stock to its line as delivered. A key that turns out to be on an
earlier order too (sold twice there) or already sold here stops that order;
its keys that came in with the batch are voided before the transaction ends,
so no key sold there is ever for sale here. No Delivery row, no job: the
buyer was served by the other shop. The order page shows the keys (the order
is DELIVERED); a resend has nothing to send. A reusable or manual product's
orders are written the same way; their keys are copies of its stock key, or
a note that it was delivered by hand there (``history_kinds``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory import sealing
from inventory.models import CardKey, CardKeyStatus
from inventory.services import (
    KeyStateError,
    import_batch_drop_if_empty,
    key_policy_get,
    keys_deliver_history,
    keys_import,
    keys_void,
)
from shop.access import order_token_new
from shop.importers.context import ImportContext, product_target, record_add, records_map
from shop.importers.records import (
    DELETED,
    DELIVERED,
    MANUAL,
    REMOTE,
    REUSABLE,
    UNDELIVERED,
    UNPAID,
    WAITING,
    SourceOrder,
    is_readable,
)
from shop.models import Coupon, ImportRecord, Order, OrderLine, OrderStatus, Product
from shop.services.checkout import buyer_email_key
from shop.services.events import events_imported, events_save

OWNED = (CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED)
ORDER_NO = re.compile(r"[A-Za-z0-9_-]{1,20}")
_LEFT_THERE = {
    UNPAID: "not paid in the source (unpaid or expired)",
    WAITING: "paid but still waiting for staff in the source: finish it there",
    UNDELIVERED: "paid but not delivered in the source (failed / abnormal): settle it there",
    DELETED: "deleted in the source",
}


class Refused(Exception):
    """The order cannot come across (the message says why); nothing of it is written."""


def orders_import(*, ctx: ImportContext, orders: Iterable[SourceOrder]) -> None:
    tally = ctx.summary["orders"]
    done = records_map(ctx=ctx, entity=ImportRecord.Entity.ORDER)
    by_product: dict[int, list[SourceOrder]] = defaultdict(list)
    for order in orders:
        ctx.tick("orders (reading)")
        kind = ctx.kinds.get(order.product_id)
        if str(order.id) in done:
            tally.already += 1
        elif (problem := _order_problem(ctx=ctx, order=order, kind=kind)):
            tally.skip(problem)
        elif (product_id := product_target(ctx=ctx, product_id=order.product_id, variant=order.variant)) is None:
            tally.skip("its 种类 or SKU options are not among its product's variants (or were not imported)")
        else:
            by_product[product_id].append(order)
    from shop.importers.history_kinds import manual_history_import, reusable_history_import

    writers = {MANUAL: manual_history_import, REUSABLE: reusable_history_import}
    for product_id, group in by_product.items():
        product = Product.objects.get(pk=product_id)
        with transaction.atomic():
            writers.get(product.kind, _product_history_import)(ctx=ctx, product=product, orders=group)


def _order_problem(*, ctx: ImportContext, order: SourceOrder, kind: str | None) -> str:
    if order.state != DELIVERED:
        return _LEFT_THERE[order.state]
    if order.unusable:
        return order.unusable
    if kind is None:
        return "its product is not in the source (or was deleted there)"
    if kind == REMOTE:
        return "its product was supplied by another shop"
    if order.product_id not in ctx.products:
        return "its product was not imported (or was deleted here)"
    if order.amount <= 0:
        return "free (amount 0): an order here is never free"
    if kind == MANUAL:
        return "" if order.quantity >= 1 else "no quantity"
    if order.quantity < 1 or len(order.key_texts) != order.quantity:
        return "its keys cannot be told apart in the source (fewer or more than its quantity)"
    if not all(is_readable(text) for text in order.key_texts):
        return "a key of it is not UTF-8 text"
    return ""


def _product_history_import(*, ctx: ImportContext, product: Product, orders: list[SourceOrder]) -> None:
    """Call inside a transaction: keys come into stock here and leave it again before it commits."""
    tally = ctx.summary["orders"]
    texts = [text for order in orders for text in order.key_texts]
    batch = keys_import(product=product, entries=enumerate(texts, start=1),
                        source=f"import_from {ctx.label}: keys of past orders")
    fresh = dict(CardKey.objects.filter(batch_id=batch.batch_id).values_list("import_line", "id"))
    rules = key_policy_get(product_id=product.pk).rules
    fingerprints = [sealing.secret_fingerprint(rules.normalise(text)) for text in texts]
    known = {fp: (pk, status) for pk, fp, status in CardKey.objects.filter(
        product=product, fingerprint__in=set(fingerprints)).values_list("pk", "fingerprint", "status")}
    elsewhere = set(CardKey.objects.filter(fingerprint__in=set(fingerprints), status__in=OWNED)
                    .exclude(product=product).values_list("fingerprint", flat=True))
    taken: dict[int, str] = {}  # key id → the source order it went to
    line_no = 0
    for order in orders:
        ctx.tick("orders")
        key_ids, first = [], line_no + 1
        line_no += len(order.key_texts)
        try:
            for line in range(first, line_no + 1):
                key_ids.append(_key_of(line=line, fingerprint=fingerprints[line - 1], fresh=fresh, known=known,
                                       elsewhere=elsewhere, taken=taken, mine=key_ids))
            with transaction.atomic():
                order_write(ctx=ctx, product=product, order=order,
                            deliver=lambda line, at, ids=key_ids, src=order: _keys_deliver(ctx=ctx, order=src, line=line,
                                                                                at=at, key_ids=ids))
        except Refused as refused:
            tally.skip("a key of it is sold on another order too (sold twice there, or here already)")
            ctx.summary.note(f"order {order.order_no or order.id}: {refused}")
            continue
        taken.update(dict.fromkeys(key_ids, order.order_no))
        tally.new += 1
    unsold = list(CardKey.objects.filter(batch_id=batch.batch_id, status=CardKeyStatus.AVAILABLE)
                  .values_list("pk", flat=True))
    keys_void(key_ids=unsold, reason=f"sold in {ctx.label}; its order was not imported", actor=ctx.actor)
    import_batch_drop_if_empty(batch_id=batch.batch_id)
    ctx.summary["keys"].skip("sold in the source on an order not imported (kept here void, never for sale)",
                             len(unsold))


def _key_of(*, line: int, fingerprint: str, fresh: dict, known: dict, elsewhere: set, taken: dict,
            mine: list[int]) -> int:
    """The key that line ``line`` of the batch stands for, if the order may have it."""
    if fingerprint in elsewhere:
        raise Refused("a key of it is on an order of another product here")
    pk = fresh.get(line)
    if pk is None:
        pk, status = known.get(fingerprint, (None, None))
        if pk is None:
            raise Refused("a key of it was refused by the product's key format")
        if status != CardKeyStatus.AVAILABLE and pk not in taken:
            raise Refused(f"a key of it is {status.lower()} here already")
    if pk in taken or pk in mine:
        raise Refused(f"a key of it was delivered on order {taken.get(pk, 'itself')} too")
    return pk


def _keys_deliver(*, ctx: ImportContext, order: SourceOrder, line: OrderLine, at, key_ids: list[int]) -> None:
    try:
        keys_deliver_history(line=line, key_ids=key_ids, at=at, actor=ctx.actor,
                             detail=f"sold in {ctx.label}, order {order.order_no or order.id}")
    except KeyStateError as exc:
        raise Refused(str(exc)) from None


def order_write(*, ctx: ImportContext, product: Product, order: SourceOrder, deliver) -> OrderLine:
    """The order, its line and its timeline, created DELIVERED: no transition
    happens here (it was placed, paid and delivered there), so none of
    ``lifecycle``'s steps apply; ``deliver(line, at)`` puts its keys on the
    line. Call inside a transaction (a savepoint: an order number taken here
    refuses only this order)."""
    created = order.created_at or timezone.now()
    paid = order.paid_at or created
    unit, discount = _line_prices(order)
    coupon_id = ctx.coupons.get(order.coupon_id) if order.coupon_id else None
    order_row = _order_create(
        numbers=_order_numbers(ctx=ctx, order=order), token_hash=order_token_new()[1], email=order.email[:254],
        status=OrderStatus.DELIVERED, amount=order.amount, currency=ctx.currency, client_ip=_ip(order.client_ip),
        created_at=created, updated_at=paid, paid_at=paid, delivered_at=paid, discount=discount,
        buyer_email=buyer_email_key(order.email), coupon_id=coupon_id,
        coupon_code=Coupon.objects.get(pk=coupon_id).code if coupon_id else "",
    )
    line = OrderLine.objects.create(order=order_row, product=product, quantity=order.quantity, unit_price=unit,
                                    discount=discount, amount=order.amount)
    events_save(*events_imported(order_row, source=ctx.label, source_order=order.order_no or str(order.id),
                                 quantity=order.quantity, created_at=created, paid_at=paid, delivered_at=paid,
                                 contact=order.contact[:100]))
    deliver(line, paid)
    record_add(ctx=ctx, entity=ImportRecord.Entity.ORDER, source_id=order.id, target_id=order_row.pk)
    return line


def _order_create(*, numbers: list[str], **fields) -> Order:
    for number in numbers:
        try:
            with transaction.atomic():
                return Order.objects.create(order_no=number, **fields)
        except IntegrityError:
            continue
    raise Refused("its order number is taken here")


def _order_numbers(*, ctx: ImportContext, order: SourceOrder) -> list[str]:
    """The source's order number, so the buyer finds the order under the
    number they know; else one made from the source id."""
    numbers = [order.order_no] if ORDER_NO.fullmatch(order.order_no or "") else []
    return [*numbers, f"{ctx.order_prefix}{order.id}"[:20]]


def _line_prices(order: SourceOrder) -> tuple[Decimal, Decimal]:
    """(unit price, discount) so that unit × quantity − discount = amount."""
    unit = order.unit_price
    if unit * order.quantity < order.amount:
        unit = (order.amount / order.quantity).quantize(Decimal("0.01"))
        if unit * order.quantity < order.amount:
            unit += Decimal("0.01")
    return unit, unit * order.quantity - order.amount


def _ip(text: str) -> str | None:
    try:
        validate_ipv46_address(text)
    except ValidationError:
        return None
    return text
