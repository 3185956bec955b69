"""Reading the catalogue and orders."""

import re

from django.db.models import Min, Sum
from django.utils import timezone

from inventory.selectors import keys_available_by_product, keys_available_count, keys_for_order
from shop.models import Category, Order, OrderEventType, OrderLine, OrderStatus, Product

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


def _live_holds(product):
    return OrderLine.objects.filter(
        product=product,
        order__status=OrderStatus.PENDING_PAYMENT,
        order__hold_expires_at__gt=timezone.now(),
    )


def product_held(*, product) -> int:
    """Keys promised to unpaid orders whose hold has not lapsed."""
    return _live_holds(product).aggregate(n=Sum("quantity"))["n"] or 0


def product_holds(*, product):
    """(keys held by unpaid orders, when the first of those holds lapses)."""
    row = _live_holds(product).aggregate(n=Sum("quantity"), first=Min("order__hold_expires_at"))
    return row["n"] or 0, row["first"]


def product_stock(*, product) -> int:
    """What a new buyer can still get: available keys minus live holds."""
    return max(0, keys_available_count(product=product) - product_held(product=product))


def products_for_sale() -> list[Product]:
    products = list(Product.objects.filter(active=True).select_related("category").order_by("name"))
    available = keys_available_by_product(product_ids=[p.pk for p in products])
    held_rows = (
        OrderLine.objects.filter(
            product__in=products,
            order__status=OrderStatus.PENDING_PAYMENT,
            order__hold_expires_at__gt=timezone.now(),
        )
        .values("product_id")
        .annotate(n=Sum("quantity"))
    )
    held = {row["product_id"]: row["n"] for row in held_rows}
    for product in products:
        product.stock = max(0, available.get(product.pk, 0) - held.get(product.pk, 0))
    return products


def order_keys(*, order) -> list:
    """The keys the buyer may see: only once the inbox delivery was written."""
    if not order.keys_visible:
        return []
    return list(keys_for_order(order_id=order.pk))


def catalogue_by_category() -> list[tuple[Category | None, list[Product]]]:
    """Products for sale grouped by category (in the categories' order, then
    uncategorised last), each with ``stock`` set."""
    groups: dict[int | None, list[Product]] = {}
    for product in products_for_sale():
        groups.setdefault(product.category_id, []).append(product)
    categories = {c.pk: c for c in Category.objects.filter(pk__in=[k for k in groups if k is not None])}
    ordered = sorted((k for k in groups if k is not None), key=lambda k: (categories[k].position, categories[k].name))
    result = [(categories[k], groups[k]) for k in ordered]
    if None in groups:
        result.append((None, groups[None]))
    return result


# What the buyer sees of an order's history; the rest is staff's audit trail.
BUYER_EVENT_TYPES = (
    OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.KEYS_RESERVED, OrderEventType.AWAITING_STOCK,
    OrderEventType.DELIVERY_SENT, OrderEventType.DELIVERY_FAILED, OrderEventType.DELIVERED, OrderEventType.EXPIRED,
    OrderEventType.STOCK_FILLED, OrderEventType.KEY_REPLACED, OrderEventType.KEY_REPORTED,
    OrderEventType.RESEND_REQUESTED, OrderEventType.REFUND_REQUESTED, OrderEventType.REFUNDED,
    OrderEventType.REVIEW_OPENED, OrderEventType.REVIEW_APPROVED, OrderEventType.REVIEW_REJECTED,
)


def order_timeline(*, order) -> list:
    return list(order.events.filter(type__in=BUYER_EVENT_TYPES).order_by("at", "id"))
