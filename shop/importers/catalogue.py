"""Bringing the catalogue across: categories, products (with their wholesale
tiers) and coupons. Each row is looked up in ImportRecord first: a re-run
leaves what it brought before alone, even if the owner has edited it since."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, transaction

from shop.importers.context import (
    ImportContext,
    live_targets,
    record_add,
    records_map,
    slug_free,
    variant_record_id,
)
from shop.importers.records import MANUAL, REMOTE, SourceCategory, SourceCoupon, SourceProduct, has_cjk
from shop.models import Category, Coupon, CouponKind, ImportRecord, ManualField, Product, QuantityTier
from shop.models.catalogue import variant_slug_new
from shop.services import product_variants_sync

E = ImportRecord.Entity
CENT = Decimal("0.01")


def categories_import(*, ctx: ImportContext, categories: Iterable[SourceCategory]) -> None:
    tally = ctx.summary["categories"]
    records = records_map(ctx=ctx, entity=E.CATEGORY)
    with transaction.atomic():
        for source in categories:
            ctx.tick("categories")
            if str(source.id) in records:
                tally.already += 1
                continue
            if source.deleted:
                tally.skip("deleted in the source")
                continue
            if not source.name:
                tally.skip("no name")
                continue
            category = Category.objects.create(
                slug=slug_free(model=Category, name=source.name, source_id=source.id, fallback="category"),
                name=source.name[:100], name_zh=source.name[:100] if has_cjk(source.name) else "",
                position=source.position,
            )
            record_add(ctx=ctx, entity=E.CATEGORY, source_id=source.id, target_id=category.pk)
            tally.new += 1
    ctx.categories = live_targets(records=records_map(ctx=ctx, entity=E.CATEGORY), model=Category)


def products_import(*, ctx: ImportContext, products: Iterable[SourceProduct]) -> None:
    """Products come across with their kind: unique keys, reusable keys
    (dujiaoka 循环卡密), manual (代充, with the questions the source asks);
    one supplied by another shop (共享/对接) has nothing of its own to bring."""
    tally = ctx.summary["products"]
    records = records_map(ctx=ctx, entity=E.PRODUCT)
    choices: dict[int, list[str]] = {}  # source product → its variants' keys
    with transaction.atomic():
        for source in products:
            ctx.tick("products")
            choices[source.id] = [variant.key for variant in source.variants]
            if source.deleted:
                tally.skip("deleted in the source")
                continue
            ctx.kinds[source.id] = source.kind
            ctx.product_category[source.id] = source.category_id
            if source.kind == REMOTE:
                tally.skip("supplied by another shop (共享/对接): it has no keys of its own")
            elif str(source.id) in records:
                tally.already += 1
                _variants_create(ctx=ctx, product_id=records[str(source.id)], source=source, records=records)
            elif (product_id := _product_create(ctx=ctx, source=source)) is not None:
                _variants_create(ctx=ctx, product_id=product_id, source=source, records=records)
    records = records_map(ctx=ctx, entity=E.PRODUCT)
    plain = {source_id: target for source_id, target in records.items() if "/" not in source_id}
    ctx.products = live_targets(records=plain, model=Product)
    alive = set(Product.objects.filter(pk__in=[t for s, t in records.items() if "/" in s]).values_list("pk", flat=True))
    ctx.variants = {(product_id, key): records[record_id] for product_id, keys in choices.items() for key in keys
                    if (record_id := variant_record_id(product_id, key)) in records and records[record_id] in alive}


def _variants_create(*, ctx: ImportContext, product_id: int, source: SourceProduct, records: dict) -> None:
    """acg-faka's choices (a 种类, or a 种类 with SKU options) as the
    product's variants here, each with its own name, price and wholesale
    prices and the product's kind; a re-run adds only those it has not
    brought before."""
    tally = ctx.summary["variants"]
    if source.variants_unmade:
        ctx.summary.note(f"product {source.id} ({source.name}): {source.variants_unmade}")
    parent = Product.objects.filter(pk=product_id).first()
    for choice in source.variants:
        record_id = variant_record_id(source.id, choice.key)
        if record_id in records:
            tally.already += 1
        elif parent is None:
            tally.skip("its product was deleted here")
        elif choice.price < CENT:
            tally.skip("price 0: a free product cannot be sold here")
        else:
            variant = Product.objects.create(
                parent=parent, slug=variant_slug_new(parent=parent, name=choice.name), name=choice.name,
                name_zh=choice.name if has_cjk(choice.name) else "", price=choice.price, kind=parent.kind,
                currency=parent.currency, active=parent.active, max_per_order=parent.max_per_order)
            record_add(ctx=ctx, entity=E.PRODUCT, source_id=record_id, target_id=variant.pk)
            _tiers_create(ctx=ctx, product=variant, tiers=choice.tiers)
            tally.new += 1
    if parent is not None and source.variants:
        product_variants_sync(product=parent)


def _product_create(*, ctx: ImportContext, source: SourceProduct) -> int | None:
    tally = ctx.summary["products"]
    if not source.name:
        tally.skip("no name")
        return None
    if source.price is None or source.price < CENT:
        tally.skip("price 0: a free product cannot be sold here")
        return None
    zh = has_cjk(source.name + source.description)
    product = Product(
        slug=slug_free(model=Product, name=source.name, source_id=source.id, fallback="product"),
        name=source.name[:200], name_zh=source.name[:200] if has_cjk(source.name) else "",
        description="" if zh else source.description, description_zh=source.description if zh else "",
        usage_notes="" if zh else source.usage_notes, usage_notes_zh=source.usage_notes if zh else "",
        category_id=ctx.categories.get(source.category_id) if source.category_id is not None else None,
        price=source.price, currency=ctx.currency, active=source.active, kind=source.kind,
    )
    if source.max_per_order:
        product.max_per_order = source.max_per_order
    if source.created_at is not None:
        product.created_at = source.created_at
    product.save()
    record_add(ctx=ctx, entity=E.PRODUCT, source_id=source.id, target_id=product.pk)
    tally.new += 1
    _tiers_create(ctx=ctx, product=product, tiers=source.tiers)
    if source.kind == MANUAL:
        _fields_create(ctx=ctx, product=product, source=source)
    return product.pk


def _fields_create(*, ctx: ImportContext, product: Product, source: SourceProduct) -> None:
    """A manual product's questions, with their kind, choices and check, required as there."""
    unread = list(source.fields_unread)
    keys: set[str] = set()
    for position, field in enumerate(source.fields, start=1):
        if field.key in keys:
            unread.append(f"the question {field.label!r} is a second one under the key {field.key!r}: left out")
            continue
        keys.add(field.key)
        ManualField.objects.create(product=product, position=10 * position, key=field.key, label=field.label,
                                   label_zh=field.label if has_cjk(field.label) else "", required=field.required,
                                   type=field.type, choices="\n".join(field.choices), pattern=field.pattern,
                                   **{"pattern_message_zh" if has_cjk(field.pattern_message) else "pattern_message":
                                      field.pattern_message},
                                   **{"help_text_zh" if has_cjk(field.hint) else "help_text": field.hint})
    for why in unread:
        ctx.summary.note(f"product {source.id} ({source.name}): {why}")


def _tiers_create(*, ctx: ImportContext, product: Product, tiers: list[tuple[int, Decimal]]) -> None:
    """A wholesale unit price there is a percentage off here, to the cent
    (3.00 of 3.50 is 14.29 % off: 3.00 once rounded)."""
    tally = ctx.summary["tiers"]
    for quantity, unit in tiers:
        percent = ((product.price - unit) * 100 / product.price).quantize(CENT)
        if quantity < 2 or not Decimal(0) < percent < Decimal(100):
            tally.skip("not a discount from 2 pieces on (from 1 piece, or not below the price)")
            continue
        _, created = QuantityTier.objects.get_or_create(product=product, min_quantity=quantity,
                                                         defaults={"percent_off": percent})
        if created:
            tally.new += 1
        else:
            tally.skip("a second price for the same quantity")


def coupons_import(*, ctx: ImportContext, coupons: Iterable[SourceCoupon]) -> None:
    tally = ctx.summary["coupons"]
    records = records_map(ctx=ctx, entity=E.COUPON)
    with transaction.atomic():
        for source in coupons:
            ctx.tick("coupons")
            if str(source.id) in records:
                tally.already += 1
                continue
            problem, products = _coupon_problem(ctx=ctx, source=source)
            if problem:
                tally.skip(problem)
                continue
            code = source.code.upper()
            try:
                with transaction.atomic():
                    coupon = Coupon.objects.create(
                        code=code, kind=CouponKind.PERCENT if source.percent else CouponKind.FIXED, value=source.value,
                        usage_limit=source.usage_limit, used_count=min(source.used_count, source.usage_limit or 0)
                        if source.usage_limit is not None else source.used_count,
                        expires_at=source.expires_at, active=source.active,
                        **({"created_at": source.created_at} if source.created_at else {}),
                    )
            except IntegrityError:
                tally.duplicates += 1
                ctx.summary.note(f"coupon {source.id}: the code {code} is taken here already "
                                 "(codes are compared in upper case)")
                continue
            if products:
                coupon.products.set(products)
            record_add(ctx=ctx, entity=E.COUPON, source_id=source.id, target_id=coupon.pk)
            tally.new += 1
    ctx.coupons = live_targets(records=records_map(ctx=ctx, entity=E.COUPON), model=Coupon)


def _coupon_problem(*, ctx: ImportContext, source: SourceCoupon) -> tuple[str, list[int]]:
    """Why the coupon cannot come across ("" if it can), and the products it is limited to here."""
    if source.unusable:
        return source.unusable, []
    if not source.code:
        return "no code", []
    if len(source.code) > 40:
        return "code longer than 40 characters", []
    if source.value is None or source.value <= 0:
        return "worth nothing (0 off)", []
    if source.percent and source.value > 100:
        return "more than 100 % off", []
    if source.product_ids is None:
        return "", []  # every product
    if source.variants is not None:
        targets = [ctx.variants.get((pid, key)) for pid in source.product_ids for key in source.variants]
        return ("", targets) if targets and None not in targets else (
            "limited to a 种类 or SKU option that was not imported", [])
    wanted = set(source.product_ids) | {pid for pid, cat in ctx.product_category.items() if cat in source.category_ids}
    products = sorted(ctx.products[pid] for pid in wanted if pid in ctx.products)
    if not products:
        return "limited to products that were not imported", []
    return "", products
