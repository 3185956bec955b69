"""Holds: a checkout sets keys aside for its unpaid order (HELD) until the
order is paid (the claim hands the same keys over) or its hold lapses (they go
back to stock).

A hold takes key rows, not a count: checkouts of one hot product lock
different free keys (SKIP LOCKED) instead of queueing on the product row to
count what is left, so a checkout costs the same at a million keys in stock as
at a thousand. Holds are not written to the key audit log: a held key is
neither sold nor shown to anyone.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus


def keys_hold(*, line_id: int, product_id: int, quantity: int) -> int:
    """Set aside ``quantity`` of the oldest free keys of the product for the
    order line, all or none, in one statement. Returns how many free keys it
    found, counting no further than ``quantity``: all of them are held when
    that is ``quantity``, none otherwise. Free keys locked by another checkout
    at this moment are passed over, not waited for (they are as good as
    sold). Call inside the checkout's transaction, after the line is written."""
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH free AS (
                SELECT id FROM {table}
                WHERE product_id = %(product)s AND status = %(available)s
                ORDER BY id + 0  -- the claim index's order (see CardKey.Meta.indexes)
                LIMIT %(n)s
                FOR UPDATE SKIP LOCKED
            ), held AS (
                UPDATE {table} AS k SET status = %(held)s, order_line_id = %(line)s, reserved_at = %(now)s
                FROM free
                WHERE k.id = free.id AND (SELECT count(*) FROM free) = %(n)s
            )
            SELECT count(*) FROM free
            """,
            {"product": product_id, "available": CardKeyStatus.AVAILABLE, "held": CardKeyStatus.HELD,
             "line": line_id, "n": quantity, "now": timezone.now()},
        )
        return cursor.fetchone()[0]


def keys_holds_release(*, line_ids: list[int], skip_locked: bool = False) -> int:
    """Put the keys held for these order lines back in stock (the orders'
    holds lapsed); returns how many. ``skip_locked``: pass over keys another
    transaction has locked (the paid path handing them over right now)."""
    if not line_ids:
        return 0
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH lapsed AS (
                SELECT id FROM {table}
                WHERE order_line_id = ANY(%(lines)s) AND status = %(held)s
                FOR UPDATE{" SKIP LOCKED" if skip_locked else ""}
            )
            UPDATE {table} AS k SET status = %(available)s, order_line_id = NULL, reserved_at = NULL
            FROM lapsed WHERE k.id = lapsed.id AND k.status = %(held)s
            """,
            {"lines": list(line_ids), "held": CardKeyStatus.HELD, "available": CardKeyStatus.AVAILABLE},
        )
        return cursor.rowcount



def keys_unhold(*, key_ids) -> int:
    """Put these held keys (locked by the caller) back in stock; returns how many."""
    if not key_ids:
        return 0
    return CardKey.objects.filter(pk__in=list(key_ids), status=CardKeyStatus.HELD).update(
        status=CardKeyStatus.AVAILABLE, order_line=None, reserved_at=None)
