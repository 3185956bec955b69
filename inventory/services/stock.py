"""Stock level: the key policy, "are n keys free", and the low-stock alert's crossing."""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus, KeyPolicy


def key_policy_get(*, product_id: int) -> KeyPolicy:
    """The product's policy, or the default one (unsaved) if it has none."""
    return KeyPolicy.objects.filter(product_id=product_id).first() or KeyPolicy(product_id=product_id)




def keys_available_at_least(*, product_id: int, n: int) -> bool:
    """Whether ``n`` keys are available: reads at most n index entries, so it
    costs the same at a thousand keys in stock as at a million."""
    if n <= 0:
        return True
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE product_id = %s AND status = %s ORDER BY id + 0 OFFSET %s LIMIT 1",
            [product_id, CardKeyStatus.AVAILABLE, n - 1],
        )
        return cursor.fetchone() is not None


def low_stock_crossed(*, product_id: int) -> KeyPolicy | None:
    """If stock just fell to the product's threshold and no alert went out for
    this crossing, mark it alerted and return the policy (else None)."""
    policy = KeyPolicy.objects.filter(
        product_id=product_id, low_stock_threshold__gt=0, low_stock_alerted_at__isnull=True
    ).first()
    if policy is None or keys_available_at_least(product_id=product_id, n=policy.low_stock_threshold + 1):
        return None
    now = timezone.now()
    marked = KeyPolicy.objects.filter(pk=policy.pk, low_stock_alerted_at__isnull=True).update(low_stock_alerted_at=now)
    if not marked:
        return None
    policy.low_stock_alerted_at = now
    return policy


def low_stock_rearm(*, product_id: int) -> bool:
    """After a restock above the threshold, let the next crossing alert again."""
    policy = KeyPolicy.objects.filter(product_id=product_id, low_stock_alerted_at__isnull=False).first()
    if policy is None or not keys_available_at_least(product_id=product_id, n=policy.low_stock_threshold + 1):
        return False
    return bool(KeyPolicy.objects.filter(pk=policy.pk).update(low_stock_alerted_at=None))
