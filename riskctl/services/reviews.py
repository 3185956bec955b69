"""The review queue: opening, closing and deciding an order's review item."""

from __future__ import annotations

from django.utils import timezone

from riskctl.models import Assessment, ReviewItem


class ReviewClosed(Exception):
    code = "REVIEW_ALREADY_DECIDED"


def review_open(*, order_id: int, assessment: Assessment) -> ReviewItem:
    review, _ = ReviewItem.objects.get_or_create(order_id=order_id, defaults={"assessment": assessment})
    return review


def review_pending(*, order_id: int) -> ReviewItem | None:
    return ReviewItem.objects.filter(order_id=order_id, decided_at__isnull=True).first()


def review_close(*, order_id: int, note: str) -> bool:
    """Close the order's open review without a human decision, because the
    order left review another way (staff refunded it, the buyer disputed the
    payment): it leaves the desk's queue, counted as rejected, the note says
    why. Returns whether a review was open. Call inside a transaction."""
    return ReviewItem.objects.filter(order_id=order_id, decided_at__isnull=True).update(
        outcome=ReviewItem.Outcome.REJECTED, decided_at=timezone.now(), note=note[:500]
    ) == 1


def review_decide(*, order_id: int, outcome: str, user=None, note: str = "") -> ReviewItem:
    """Record the human decision once. Call inside a transaction."""
    updated = ReviewItem.objects.filter(order_id=order_id, decided_at__isnull=True).update(
        outcome=outcome, decided_at=timezone.now(), decided_by=user, note=note
    )
    if updated != 1:
        raise ReviewClosed(f"order {order_id} has no open review")
    return ReviewItem.objects.get(order_id=order_id)
