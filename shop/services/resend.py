"""The order-level resend: send an order's SAME keys again (buyer, staff, ``redeliver``)."""

from __future__ import annotations

from django.db import transaction

from delivery.models import Channel, Delivery
from delivery.services import delivery_resend
from riskctl.models import RiskEventKind
from riskctl.services import risk_event_for_order
from shop.models import Order
from shop.project.locks import order_lock
from shop.services.events import event_resend_requested, events_save


class ResendNotAllowed(Exception):
    code = "RESEND_NOT_ALLOWED"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def order_resend(*, order_id: int, actor: str, channels: list[str] | None = None, enqueue: bool = True,
                 note: str = "") -> list[int]:
    """Send the order's SAME keys again to its own channels (all but the inbox,
    or only ``channels``). Returns the ids of the deliveries that will be sent
    (by the worker after commit, or by the caller when ``enqueue`` is False).
    Only for orders whose keys were handed over. ``note``: why (staff), kept
    on the timeline event."""
    with transaction.atomic():
        order = order_lock(id=order_id)
        if order.status not in Order.KEYS_VISIBLE:
            raise ResendNotAllowed("There is nothing to resend before the keys are delivered.")
        deliveries = order.deliveries.exclude(channel=Channel.INBOX).order_by("id")
        if channels:
            deliveries = deliveries.filter(channel__in=channels)
        resent = [d.pk for d in deliveries if delivery_resend(delivery_id=d.pk, enqueue=enqueue)]
        if resent:
            sent_to = Delivery.objects.filter(pk__in=resent).order_by("id").values_list("channel", flat=True)
            events_save(event_resend_requested(order, actor=actor, channels=list(sent_to), note=note))
            risk_event_for_order(kind=RiskEventKind.RESEND, order_id=order.pk)
    return resent
