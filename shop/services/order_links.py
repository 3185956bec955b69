"""Revoking an order's links: staff, when a link leaked (forwarded, posted,
seen on a shared screen)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from shop.models import Order
from shop.project.locks import orders_lock
from shop.services.events import event_links_revoked, events_save


def order_links_revoke(*, order_ids: list[int], actor: str, note: str = "") -> dict[str, int]:
    """Revoke every link to each order: its ``link_version`` goes up by one,
    so each signed link made before (emails, SMS, "Copy link") and each
    browser that opened the order through one no longer opens it. A browser
    signed in with the order's email ("all my orders") keeps it: that sign-in
    proved the mailbox, not a link. The timeline records who and when.
    Returns {order_no: new version}."""
    note = " ".join((note or "").split())[:300]
    revoked = {}
    with transaction.atomic():
        # Lock order: Order rows by id, as everywhere (no Payment is touched).
        orders = orders_lock(ids=order_ids)
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(link_version=F("link_version") + 1)
        for order in orders:
            order.link_version += 1
            events_save(event_links_revoked(order, actor=actor, link_version=order.link_version, note=note))
            revoked[order.order_no] = order.link_version
    return revoked
