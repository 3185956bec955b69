"""Reading card key stock."""

from django.db.models import Count, Q

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


def key_on_order(*, order_id: int, key_id: int) -> CardKey | None:
    return CardKey.objects.select_related("order_line").filter(pk=key_id, order_line__order_id=order_id).first()
