"""Reading the catalogue and orders."""

import re
from dataclasses import dataclass

from django.db.models import BooleanField, Count, Min, Q, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus
from inventory.selectors import keys_available_count, keys_for_order
from shop.models import (
    Category,
    ManualField,
    Order,
    OrderEventType,
    OrderLine,
    OrderStatus,
    Product,
    ProductKind,
    QuantityTier,
)

# What an order number looks like: ASCII letters and digits within the
# column's 20 characters. The checkout draws 14 digits (_order_no_new); test
# and benchmark data put a letter in front.
ORDER_NO_RE = re.compile(r"[A-Za-z0-9]{1,20}")


def order_by_number(*, order_no: str) -> Order | None:
    """The order with this public number, or None. A number not in the shop's
    format (NUL, surrogates, punctuation, too long: anything from a URL or a
    form) is None without a query: PostgreSQL refuses NUL with an error."""
    if not ORDER_NO_RE.fullmatch(order_no or ""):
        return None
    return Order.objects.filter(order_no=order_no).first()


def order_nos_missing(*, order_nos: list[str]) -> list[str]:
    """Those of ``order_nos`` no order has, in the order given (one query).
    A number not in the shop's format is missing without being looked up."""
    wanted = [no for no in order_nos if ORDER_NO_RE.fullmatch(no or "")]
    found = set(Order.objects.filter(order_no__in=wanted).values_list("order_no", flat=True)) if wanted else set()
    return list(dict.fromkeys(no for no in order_nos if no not in found))


def _lapsed_held(product_ids: list[int]) -> dict[int, int]:
    """product id → keys still held for unpaid orders whose hold has lapsed
    (free again: the next checkout puts them back). Found through the unpaid
    orders' hold index; the sweep expires such orders every minute."""
    lapsed_lines = OrderLine.objects.filter(order__status=OrderStatus.PENDING_PAYMENT,
                                            order__hold_expires_at__lte=timezone.now(), product_id__in=product_ids)
    rows = (CardKey.objects.filter(status=CardKeyStatus.HELD, order_line__in=lapsed_lines)
            .values("product_id").annotate(n=Count("id")).order_by())
    return {row["product_id"]: row["n"] for row in rows}


# Written out, not Exists(Product.objects.filter(parent=OuterRef("pk"))): the
# ORM resolves and compiles that subquery afresh on every read, ≈ 0.8 ms of
# CPU on each checkout (bench/profile_checkout.py), more than the read itself.
_HAS_VARIANTS = (f'EXISTS (SELECT 1 FROM "{Product._meta.db_table}" "variant" '
                 f'WHERE "variant"."parent_id" = "{Product._meta.db_table}"."id")')


def product_for_checkout(*, slug: str) -> Product | None:
    """The active product ``slug`` names, its ``parent`` loaded and
    ``has_variants`` set, in one query; None if there is none."""
    try:
        return (Product.objects.select_related("parent")
                .annotate(has_variants=RawSQL(_HAS_VARIANTS, (), output_field=BooleanField()))
                .get(slug=slug, active=True))
    except Product.DoesNotExist:
        return None


def product_holds(*, product):
    """(keys held by unpaid orders whose hold is live, when the first of those holds lapses)."""
    row = CardKey.objects.filter(
        product=product, status=CardKeyStatus.HELD, order_line__order__status=OrderStatus.PENDING_PAYMENT,
        order_line__order__hold_expires_at__gt=timezone.now(),
    ).aggregate(n=Count("id"), first=Min("order_line__order__hold_expires_at"))
    return row["n"], row["first"]


def product_stock(*, product) -> int:
    """What a new buyer can still get: keys in stock (held keys are not),
    and those of lapsed holds. A reusable product: see ``reusable_left``
    (no cap: ``max_per_order``, as much as one order may take). A manual
    product has no stock: as much as one order may take. A product with
    variants: what its active variants have together."""
    if product.kind == ProductKind.MANUAL:
        return product.max_per_order
    if options := list(Product.objects.filter(parent=product)):
        return sum(product_stock(product=v) for v in options if v.active)
    if product.kind == ProductKind.REUSABLE:
        left = reusable_left(products=[product])[product.pk]
        return product.max_per_order if left is None else left
    return keys_available_count(product=product) + _lapsed_held([product.pk]).get(product.pk, 0)


def reusable_left(*, products, clamp: bool = True) -> dict[int, int | None]:
    """Sales left of each reusable product: 0 without a key in stock, None
    (no limit) without a cap, else the cap less the sales made (copies not
    voided) and those held by unpaid orders whose hold is live (below 0 when
    over the cap, unless ``clamp``)."""
    products = [p for p in products if p.kind == ProductKind.REUSABLE]
    ids = [p.pk for p in products]
    with_keys = set(CardKey.objects.filter(product_id__in=ids, source__isnull=True, status=CardKeyStatus.AVAILABLE)
                    .values_list("product_id", flat=True).distinct()) if ids else set()
    capped = [p.pk for p in products if p.sales_cap is not None and p.pk in with_keys]
    sold = dict(CardKey.objects.filter(product_id__in=capped, source__isnull=False,
                                       status__in=[CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED])
                .values("product_id").annotate(n=Count("id")).values_list("product_id", "n")) if capped else {}
    pending = dict(OrderLine.objects.filter(product_id__in=capped, order__status=OrderStatus.PENDING_PAYMENT,
                                            order__hold_expires_at__gt=timezone.now())
                   .values("product_id").annotate(n=Sum("quantity")).values_list("product_id", "n")) if capped else {}
    left: dict[int, int | None] = {}
    for p in products:
        if p.pk not in with_keys or p.sales_cap is None:
            left[p.pk] = 0 if p.pk not in with_keys else None
            continue
        n = p.sales_cap - sold.get(p.pk, 0) - (pending.get(p.pk) or 0)
        left[p.pk] = max(0, n) if clamp else n
    return left


def product_tiers(*, product: Product) -> list[QuantityTier]:
    """The wholesale tiers that price ``product``, fewest keys first: a
    variant's own, or its product's when it has none (one query)."""
    tiers = list(QuantityTier.objects.filter(product_id__in=[pk for pk in (product.pk, product.parent_id) if pk])
                 .order_by("min_quantity"))
    own = [t for t in tiers if t.product_id == product.pk]
    return own or tiers


def _key_counts(product_ids: list[int]) -> dict[int, tuple[int, int]]:
    """product id → (keys available, keys sold), in one aggregate query.
    Sold is delivered: a key reserved for an order under review or refunded
    later is not a sale yet."""
    rows = (
        CardKey.objects.filter(product_id__in=product_ids,
                               status__in=[CardKeyStatus.AVAILABLE, CardKeyStatus.DELIVERED])
        .values("product_id")
        .annotate(available=Count("id", filter=Q(status=CardKeyStatus.AVAILABLE)),
                  sold=Count("id", filter=Q(status=CardKeyStatus.DELIVERED)))
    )
    return {row["product_id"]: (row["available"], row["sold"]) for row in rows}


def product_sold(*, product) -> int:
    """Keys of this product (or of its variants) delivered to buyers (as ``products_for_sale`` counts them)."""
    return CardKey.objects.filter(Q(product=product) | Q(product__parent=product),
                                  status=CardKeyStatus.DELIVERED).count()


def products_for_sale(*, query: str = "") -> list[Product]:
    """The active products by name (those whose name, English or Chinese, or
    a variant's, contains ``query`` in any case, when given), each with
    ``stock`` (what a new buyer can get; ``stock_unlimited`` for a reusable
    product without a cap) and ``sold`` (keys delivered). A product with
    variants has its active ones in ``variants`` (by price), each counted the
    same way, and counts as their sum, priced ``price_from`` the cheapest; a
    product without has ``variants`` empty. Four queries, however many
    products (three more when some are reusable)."""
    parents = Product.objects.filter(active=True, parent__isnull=True).select_related("category").order_by("name", "id")
    if query := query.strip():
        named = Q(name__icontains=query) | Q(name_zh__icontains=query)
        options = Product.objects.filter(named, active=True, parent__isnull=False).values("parent_id")
        parents = parents.filter(named | Q(pk__in=options))
    parents = list(parents)
    if not parents:
        return []
    by_id = {p.pk: p for p in parents}
    # Every variant, active or not: a product whose variants are all off sells nothing.
    every_variant = list(Product.objects.filter(parent_id__in=by_id).order_by("price", "id"))
    grouped = {v.parent_id for v in every_variant}
    variants = [v for v in every_variant if v.active]
    for variant in variants:
        variant.parent = by_id[variant.parent_id]
    sold_alone = [p for p in parents if p.pk not in grouped]
    _counts_set(sold_alone + variants)
    for product in parents:
        product.variants_for_sale = [v for v in variants if v.parent_id == product.pk]
        product.price_from = product.price
        product.has_variants = product.pk in grouped
        if product.has_variants:
            options = product.variants_for_sale
            product.stock = sum(v.stock for v in options)
            product.sold = sum(v.sold for v in options)
            product.stock_unlimited = any(v.stock_unlimited for v in options)
            product.price_from = min((v.price for v in options), default=product.price)
    return parents


def _counts_set(products: list[Product]) -> None:
    """Set ``stock``, ``stock_unlimited`` and ``sold`` on each of ``products``
    (none of which has variants): two queries, three more when some are reusable."""
    if not products:
        return
    counts = _key_counts([p.pk for p in products])
    lapsed = _lapsed_held([p.pk for p in products])
    reusable = reusable_left(products=products)
    for product in products:
        available, product.sold = counts.get(product.pk, (0, 0))
        product.stock = available + lapsed.get(product.pk, 0)
        # A reusable product without a cap: no number to show, as much as one order may take.
        product.stock_unlimited = product.pk in reusable and reusable[product.pk] is None
        if product.pk in reusable:
            product.stock = product.max_per_order if product.stock_unlimited else reusable[product.pk]
        if product.kind == ProductKind.MANUAL:  # staff deliver it: no stock to count
            product.stock, product.stock_unlimited = product.max_per_order, True


def manual_fields_by_product(*, products) -> dict[int, list[ManualField]]:
    """product id → its manual fields in order, for the manual ones of ``products``
    and the products of manual variants (whose questions they ask when they have
    none of their own: ``shop.services.manual.manual_fields_of``), one query."""
    manual = [p for p in products if p.kind == ProductKind.MANUAL]
    ids = [p.pk for p in manual] + [p.parent_id for p in manual if p.parent_id]
    fields: dict[int, list[ManualField]] = {}
    for field in ManualField.objects.filter(product_id__in=ids).order_by("position", "id") if ids else ():
        fields.setdefault(field.product_id, []).append(field)
    return fields


def order_keys(*, order) -> list:
    """The keys the buyer may see: only once the inbox delivery was written."""
    if not order.keys_visible:
        return []
    return list(keys_for_order(order_id=order.pk))


def _by_category(products: list[Product]) -> list[tuple[Category | None, list[Product]]]:
    """``products`` grouped by category, in the categories' order, uncategorised last."""
    groups: dict[int | None, list[Product]] = {}
    for product in products:
        groups.setdefault(product.category_id, []).append(product)
    categories = {p.category_id: p.category for p in products if p.category_id is not None}
    ordered = sorted(categories, key=lambda k: (categories[k].position, categories[k].name, k))
    result = [(categories[k], groups[k]) for k in ordered]
    if None in groups:
        result.append((None, groups[None]))
    return result


@dataclass(frozen=True)
class CataloguePage:
    """What the catalogue shows for a search and a category chip."""

    query: str
    category: Category | None  # the chip chosen, if any
    # (category, products matching the search in it): the chips' counts.
    categories: list[tuple[Category, int]]
    total: int  # products matching the search, all categories
    # Matching the search and the chip, in the categories' order, then by name
    # (uncategorised last): one grid, the chips for going to a category.
    products: list[Product]

    @property
    def filtered(self) -> bool:
        return bool(self.query or self.category)


# The longest search the catalogue takes (the field's maxlength too).
CATALOGUE_QUERY_MAX = 100


def catalogue_page(*, query: str = "", category_slug: str = "") -> CataloguePage:
    """The catalogue for ``?q=`` (name or Chinese name, any case) and ``?c=``
    (a category's slug; unknown: all). Each chip counts the products the
    search finds in its category; a category with no active product has no
    chip. Four queries, however many products."""
    # NUL and lone surrogates (anything in a URL) are no text PostgreSQL takes.
    query = query.replace("\x00", "").encode("utf-8", "ignore").decode("utf-8").strip()[:CATALOGUE_QUERY_MAX]
    found = products_for_sale(query=query)
    counts: dict[int, int] = {}
    for product in found:
        if product.category_id is not None:
            counts[product.category_id] = counts.get(product.category_id, 0) + 1
    categories = list(
        Category.objects.filter(products__active=True).distinct().order_by("position", "name", "id")
    )
    chosen = next((c for c in categories if c.slug == category_slug), None)
    grouped = _by_category([p for p in found if chosen is None or p.category_id == chosen.pk])
    return CataloguePage(
        query=query, category=chosen, categories=[(c, counts.get(c.pk, 0)) for c in categories],
        total=len(found), products=[p for _category, group in grouped for p in group],
    )


# How many products the product page suggests beside its own.
RELATED_MAX = 4


def products_related(*, product: Product, listed: list[Product] | None = None,
                     limit: int = RELATED_MAX) -> list[Product]:
    """Up to ``limit`` other products for sale (of ``listed``, the result of
    ``products_for_sale()`` when the caller has it): the same category first,
    and within that those in stock first, then by name; each with ``stock``
    and ``sold`` set."""
    others = [p for p in (products_for_sale() if listed is None else listed) if p.pk != product.pk]
    others.sort(key=lambda p: (
        product.category_id is None or p.category_id != product.category_id, p.stock == 0, p.name, p.pk))
    return others[:limit]


# What the buyer sees of an order's history; the rest is staff's audit trail.
BUYER_EVENT_TYPES = (
    OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.KEYS_RESERVED, OrderEventType.AWAITING_STOCK,
    OrderEventType.DELIVERY_SENT, OrderEventType.DELIVERY_FAILED, OrderEventType.DELIVERED, OrderEventType.EXPIRED,
    OrderEventType.STOCK_FILLED, OrderEventType.KEY_REPLACED, OrderEventType.KEY_REPORTED,
    OrderEventType.RESEND_REQUESTED, OrderEventType.REFUND_REQUESTED, OrderEventType.REFUNDED,
    OrderEventType.REVIEW_OPENED, OrderEventType.REVIEW_APPROVED, OrderEventType.REVIEW_REJECTED,
    OrderEventType.MANUAL_QUEUED, OrderEventType.MANUAL_DELIVERED,
)


def order_timeline(*, order) -> list:
    return list(order.events.filter(type__in=BUYER_EVENT_TYPES).order_by("at", "id"))
