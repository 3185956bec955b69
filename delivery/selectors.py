"""Reading the delivery outbox."""

from datetime import datetime

from delivery.models import Channel, Delivery


def deliveries_select(
    *, order_nos: list[str] | None = None, status: str | None = None, since: datetime | None = None,
    until: datetime | None = None, product_slug: str | None = None, channel: str | None = None,
):
    """Deliveries that can be sent again (never the inbox), filters ANDed, oldest first."""
    deliveries = Delivery.objects.exclude(channel=Channel.INBOX).select_related("order")
    if order_nos:
        deliveries = deliveries.filter(order__order_no__in=order_nos)
    if status:
        deliveries = deliveries.filter(status=status)
    if since:
        deliveries = deliveries.filter(created_at__gte=since)
    if until:
        deliveries = deliveries.filter(created_at__lt=until)
    if product_slug:
        deliveries = deliveries.filter(order__lines__product__slug=product_slug)
    if channel:
        deliveries = deliveries.filter(channel=channel)
    return deliveries.distinct().order_by("created_at", "id")


def delivery_oldest_pending_at() -> datetime | None:
    """When the oldest delivery still waiting to be sent was written (None: none waits)."""
    from delivery.models import DeliveryStatus

    return (
        Delivery.objects.filter(status=DeliveryStatus.PENDING).order_by("created_at")
        .values_list("created_at", flat=True).first()
    )


def sweep_last_run(*, name: str = "sweep"):
    """The sweeper's last recorded run, or None if it never ran."""
    from delivery.models import SweepRun

    return SweepRun.objects.filter(name=name).first()
