"""Row locks, always taken in one order: Payment → Order → CardKey, each set
by id. Two transactions that lock in the same order wait for each other
instead of deadlocking, so every ``SELECT … FOR UPDATE`` on these three
tables is here (the card-key claim's and the checkout hold's own ``FOR
UPDATE`` are part of their statements in ``inventory.services.claim`` and
``inventory.services.holds``, always the last step of the order).

Project plumbing, below every app: models are looked up by label, so the
payments and delivery apps lock orders without importing the shop.
"""

from __future__ import annotations

from django.apps import apps

LOCK_ORDER = ("payments.Payment", "shop.Order", "inventory.CardKey")


def payments_lock(queryset) -> list:
    """Lock the payments of ``queryset`` (Payment rows), by id. Take them
    before their orders."""
    assert queryset.model._meta.label == "payments.Payment"
    return list(queryset.select_for_update().order_by("id"))


def orders_lock(*, ids, skip_locked: bool = False, status: str | None = None) -> list:
    """Lock the orders with these ids (only those in ``status``, if given), by
    id. With ``skip_locked``, orders another transaction holds are left out.
    Take them after their payments, before their keys."""
    orders = apps.get_model("shop", "Order").objects.filter(pk__in=list(ids))
    if status is not None:
        orders = orders.filter(status=status)
    return list(orders.select_for_update(skip_locked=skip_locked).order_by("id"))


def order_lock(*, id: int):
    """Lock one order (raises ``Order.DoesNotExist``)."""
    return apps.get_model("shop", "Order").objects.select_for_update().get(pk=id)


def keys_lock(queryset, *, skip_locked: bool = False, limit: int | None = None) -> list:
    """Lock card keys of ``queryset`` (the first ``limit`` of them) by id:
    owner actions, redemptions, re-sealing. Take them last. (The paid path
    claims keys in one statement of its own.)"""
    assert queryset.model._meta.label == "inventory.CardKey"
    keys = queryset.select_for_update(skip_locked=skip_locked).order_by("id")
    return list(keys[:limit] if limit is not None else keys)
