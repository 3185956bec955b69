"""Reading card key stock."""

from django.db.models import Count, F, Q

from inventory.models import CardKey, CardKeyStatus


def keys_available_count(*, product) -> int:
    return CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count()


def keys_available_by_product(*, product_ids) -> dict[int, int]:
    rows = (
        CardKey.objects.filter(product_id__in=list(product_ids))
        .values("product_id")
        .annotate(n=Count("id", filter=Q(status=CardKeyStatus.AVAILABLE)))
    )
    return {row["product_id"]: row["n"] for row in rows}


def keys_for_order(*, order_id: int):
    """The keys handed over to an order, in a stable order."""
    return (
        CardKey.objects.filter(order_line__order_id=order_id, status=CardKeyStatus.DELIVERED)
        .select_related("product")
        .order_by("order_line_id", "id")
    )


def keys_for_orders(*, order_ids) -> dict[int, list[CardKey]]:
    """The keys handed over to each of ``order_ids`` (as ``keys_for_order``
    would list them), in one query: a batch of emails reads them at once."""
    keys = (
        CardKey.objects.filter(order_line__order_id__in=list(order_ids), status=CardKeyStatus.DELIVERED)
        .select_related("product")
        .annotate(order_id=F("order_line__order_id"))
        .order_by("order_line_id", "id")
    )
    by_order: dict[int, list[CardKey]] = {}
    for key in keys:
        by_order.setdefault(key.order_id, []).append(key)
    return by_order


def key_on_order(*, order_id: int, key_id: int) -> CardKey | None:
    return CardKey.objects.select_related("order_line").filter(pk=key_id, order_line__order_id=order_id).first()
