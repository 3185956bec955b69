"""Reads for the review desk and the block page: the queue, a buyer's linked
orders and history, and who else shares an identifier."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from riskctl.identity import BuyerContext
from riskctl.models import IdentifierKind, ReviewItem, RiskEvent, RiskEventKind

SHARED_DAYS = 30
_FIELDS = {IdentifierKind.EMAIL: "email", IdentifierKind.IP: "ip", IdentifierKind.DEVICE: "device",
           IdentifierKind.PHONE: "phone"}


def review_queue():
    """Undecided review items, the longest waiting first."""
    return ReviewItem.objects.filter(decided_at__isnull=True).order_by("opened_at", "pk")


def review_neighbours(*, item: ReviewItem) -> tuple[int | None, int | None, int, int]:
    """(previous id, next id, 1-based position, undecided count) of ``item``
    in the queue. A decided item has no position (0); its "next" is the
    longest-waiting undecided item."""
    queue = review_queue()
    total = queue.count()
    if item.decided_at is not None:
        first = queue.values_list("pk", flat=True).first()
        return None, first, 0, total
    before = Q(opened_at__lt=item.opened_at) | Q(opened_at=item.opened_at, pk__lt=item.pk)
    after = Q(opened_at__gt=item.opened_at) | Q(opened_at=item.opened_at, pk__gt=item.pk)
    previous = queue.filter(before).order_by("-opened_at", "-pk").values_list("pk", flat=True).first()
    following = queue.filter(after).values_list("pk", flat=True).first()
    return previous, following, queue.filter(before).count() + 1, total


def review_next_after(*, item: ReviewItem) -> int | None:
    """The undecided item to open after deciding ``item``: the next one in
    the queue, else the longest waiting, else None."""
    queue = review_queue().exclude(pk=item.pk)
    after = Q(opened_at__gt=item.opened_at) | Q(opened_at=item.opened_at, pk__gt=item.pk)
    return queue.filter(after).values_list("pk", flat=True).first() or queue.values_list("pk", flat=True).first()


def buyer_identifiers(*, buyer: BuyerContext) -> list[tuple[str, str]]:
    """(kind, value) of every identifier the buyer gave, email first."""
    return [(kind, getattr(buyer, field)) for kind, field in _FIELDS.items() if getattr(buyer, field)]


def identifier_sharers(*, buyer: BuyerContext, days: int = SHARED_DAYS) -> dict[str, int]:
    """For each identifier but the email: how many OTHER buyers (distinct
    emails) placed orders with it in the last ``days``. Blocking a shared
    identifier blocks them too."""
    since = timezone.now() - timedelta(days=days)
    found = {}
    for kind, value in buyer_identifiers(buyer=buyer):
        if kind == IdentifierKind.EMAIL:
            continue
        found[kind] = (
            RiskEvent.objects.filter(**{_FIELDS[kind]: value}, kind=RiskEventKind.ORDER_CREATED, at__gte=since)
            .exclude(email="").exclude(email=buyer.email)
            .aggregate(n=Count("email", distinct=True))["n"]
        )
    return found


def _any_identifier(buyer: BuyerContext, kinds) -> Q:
    match = Q(pk__in=[])
    for kind, value in buyer_identifiers(buyer=buyer):
        if kind in kinds:
            match |= Q(**{_FIELDS[kind]: value})
    return match


def linked_order_ids(*, buyer: BuyerContext, exclude_order_id: int | None = None,
                     limit: int = 20) -> dict[int, list[str]]:
    """Orders placed with any of the buyer's identifiers, newest first:
    {order id: [the kinds they share]}."""
    events = (RiskEvent.objects.filter(_any_identifier(buyer, _FIELDS), kind=RiskEventKind.ORDER_CREATED)
              .exclude(order_id=None).order_by("-at"))
    if exclude_order_id is not None:
        events = events.exclude(order_id=exclude_order_id)
    linked: dict[int, list[str]] = {}
    for event in events[:200]:
        if event.order_id not in linked and len(linked) >= limit:
            continue
        shared = linked.setdefault(event.order_id, [])
        for kind, field in _FIELDS.items():
            if getattr(event, field) and getattr(event, field) == getattr(buyer, field) and kind not in shared:
                shared.append(kind)
    return linked


def buyer_history(*, buyer: BuyerContext, limit: int = 50) -> list[RiskEvent]:
    """What this buyer did (by email, device or phone: an IP is too often
    shared to be one person's), newest first."""
    kinds = (IdentifierKind.EMAIL, IdentifierKind.DEVICE, IdentifierKind.PHONE)
    return list(RiskEvent.objects.filter(_any_identifier(buyer, kinds)).order_by("-at", "-pk")[:limit])
