"""What the shop tells merchants' webhooks (see ``delivery.webhooks``): the
payloads of the order and product events. Never key material, never the
buyer's token."""

from __future__ import annotations

from delivery.models import WebhookEvent
from delivery.webhooks import webhook_emit
from inventory.selectors import keys_available_count
from shop.models import Order, Product


def _at(value) -> str | None:
    return value.isoformat() if value else None


def order_webhook_emit(*, order: Order, event: str) -> list[int]:
    """Tell the merchant's endpoints about ``order``. Call inside the transaction
    that made the change: it is sent only once that commits."""
    def data() -> dict:
        lines = order.lines.select_related("product").order_by("id")
        return {
            "order_no": order.order_no,
            "status": order.status,
            "amount": f"{order.amount:.2f}",
            "currency": order.currency,
            "items": [{"product": line.product.slug, "quantity": line.quantity} for line in lines],
            "paid_at": _at(order.paid_at),
            "delivered_at": _at(order.delivered_at),
        }

    return webhook_emit(event=event, data=data)


def product_low_stock_webhook_emit(*, product_id: int, threshold: int) -> list[int]:
    def data() -> dict:
        product = Product.objects.get(pk=product_id)
        return {
            "product": product.slug, "name": str(product), "threshold": threshold,
            "available": keys_available_count(product=product),
        }

    return webhook_emit(event=WebhookEvent.PRODUCT_LOW_STOCK, data=data)
