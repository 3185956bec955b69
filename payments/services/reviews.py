"""Rejecting an order held for review: the decision, then the refund."""

from __future__ import annotations

from django.db import transaction

from payments.models import Refund
from payments.services.refunds import payment_refund
from riskctl.services import buyer_block, order_buyer, review_decide
from shop.project.locks import order_lock
from shop.services.events import event_review_decided, events_save


def order_review_reject(*, order_id: int, user, note: str, block_buyer: bool = False, block_kinds=None,
                        block_expires_at: dict | None = None) -> Refund:
    """Record the rejection (and, with ``block_buyer``, block the buyer's
    identifiers: ``block_kinds`` until ``block_expires_at``, as
    ``buyer_block`` takes them; left out, every identifier for the default
    time), then refund: the keys go back to stock, the order becomes
    REFUNDED and the buyer is told by the refund email."""
    actor = f"staff:{user.get_username()}" if user else "system"
    with transaction.atomic():
        order = order_lock(id=order_id)
        review_decide(order_id=order_id, outcome="REJECTED", user=user, note=note)
        events_save(event_review_decided(order, approved=False, actor=actor, note=note))
        if block_buyer and (buyer := order_buyer(order_id=order_id)) is not None:
            buyer_block(buyer=buyer, reason=f"review of order {order.order_no} rejected: {note}"[:200], user=user,
                        kinds=block_kinds, expires_at=block_expires_at)
    return payment_refund(order=order, actor=actor, reason=f"review rejected: {note}"[:500])
