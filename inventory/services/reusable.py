"""Reusable keys (循环卡密): one key, or a few, handed to every buyer of a
product (a shared account, a download code).

A sale is a copy: a new key row on the buyer's order line with the same
product and the same sealed secret, pointing at its ``source``. So every
path that reads an order's keys (the inbox, email, SMS, resend, the audit)
works on copies as on unique keys, and the stock key itself never leaves
stock. The stock keys of a reusable product are locked while a claim counts
its copies against the product's ``sales_cap``: two claims cannot both take
the last sale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent

# The copies that count as sales against the cap: all but voided ones
# (a released copy is voided: the sale was undone).
SOLD_STATUSES = (CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED)


@dataclass
class ReusableStock:
    """A reusable product's stock keys (ids, oldest first) and how many sales
    are left (None: no cap), as locked by ``reusable_stock_lock``."""

    keys: list[int]
    left: int | None
    sold: int = 0  # copies made so far: the next one copies keys[sold % len(keys)]
    dealt: list = field(default_factory=list)

    def can_sell(self, quantity: int) -> bool:
        return bool(self.keys) and (self.left is None or self.left >= quantity)

    def sell(self, quantity: int) -> list[int]:
        """The stock keys the next ``quantity`` copies copy, in turn."""
        picked = [self.keys[(self.sold + i) % len(self.keys)] for i in range(quantity)]
        self.sold += quantity
        if self.left is not None:
            self.left -= quantity
        return picked


def reusable_caps(*, product_ids) -> dict[int, int | None]:
    """product id → sales cap (None: no cap), of those products that are reusable."""
    product_table = CardKey._meta.get_field("product").related_model._meta.db_table
    if not product_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, sales_cap FROM {product_table} WHERE id = ANY(%s) AND kind = 'reusable'",
                       [sorted(product_ids)])
        return dict(cursor.fetchall())


def reusable_stock_lock(*, product_ids) -> dict[int, ReusableStock]:
    """Lock the stock keys of those products that are reusable and count
    their sales; by product. Call inside the claim's transaction."""
    caps = reusable_caps(product_ids=product_ids)
    if not caps:
        return {}
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT product_id, id FROM {table} WHERE product_id = ANY(%s) AND source_id IS NULL AND status = %s"
            " ORDER BY id FOR UPDATE",
            [sorted(caps), CardKeyStatus.AVAILABLE],
        )
        keys = cursor.fetchall()
        cursor.execute(
            f"SELECT product_id, count(*) FROM {table} WHERE product_id = ANY(%s) AND source_id IS NOT NULL"
            " AND status = ANY(%s) GROUP BY product_id",
            [sorted(caps), list(SOLD_STATUSES)],
        )
        sold = dict(cursor.fetchall())
    stock = {
        pid: ReusableStock(keys=[], left=None if cap is None else max(0, cap - sold.get(pid, 0)), sold=sold.get(pid, 0))
        for pid, cap in caps.items()
    }
    for pid, key_id in keys:
        stock[pid].keys.append(key_id)
    return stock


def keys_copy(*, copies: list[tuple[int, int, bool, str]], actor: str) -> dict[int, list[int]]:
    """Make the copies: (stock key id, order line id, reveal, audit detail)
    each, in one statement with their audit rows (SOLD, and DELIVERED for
    revealed ones). Returns the new keys' ids by order line."""
    if not copies:
        return {}
    table = CardKey._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH wanted AS (
                SELECT * FROM unnest(%(sources)s::bigint[], %(lines)s::bigint[], %(reveal)s::boolean[],
                                     %(details)s::text[]) WITH ORDINALITY AS w(source_id, line_id, reveal, detail, n)
            ), copied AS (
                INSERT INTO {table} (product_id, secret_sealed, fingerprint, loose_fingerprint, status,
                                     order_line_id, source_id, batch_id, import_line, created_at, reserved_at,
                                     delivered_at, void_reason)
                SELECT s.product_id, s.secret_sealed, s.fingerprint, s.loose_fingerprint,
                       CASE WHEN w.reveal THEN %(delivered)s ELSE %(reserved)s END, w.line_id, s.id, s.batch_id,
                       s.import_line, %(now)s, %(now)s, CASE WHEN w.reveal THEN %(now)s::timestamptz END, ''
                FROM wanted w JOIN {table} s ON s.id = w.source_id
                ORDER BY w.n
                RETURNING id, order_line_id, status
            ), audited AS (
                INSERT INTO {KeyAuditEvent._meta.db_table} (card_key_id, action, actor, ip, at, detail)
                SELECT c.id, a.action, %(actor)s, NULL, %(now)s,
                       (SELECT detail FROM wanted WHERE line_id = c.order_line_id LIMIT 1)
                FROM copied c JOIN (VALUES (1, %(sold)s), (2, %(handed)s)) AS a(step, action)
                     ON a.step = 1 OR c.status = %(delivered)s
            )
            SELECT order_line_id, id FROM copied ORDER BY id
            """,
            {
                "sources": [c[0] for c in copies], "lines": [c[1] for c in copies],
                "reveal": [c[2] for c in copies], "details": [c[3] for c in copies],
                "reserved": CardKeyStatus.RESERVED, "delivered": CardKeyStatus.DELIVERED, "now": now, "actor": actor,
                "sold": KeyAuditEvent.Action.SOLD, "handed": KeyAuditEvent.Action.DELIVERED,
            },
        )
        rows = cursor.fetchall()
    if len(rows) != len(copies):  # a stock key vanished under its lock: let the transaction roll back
        raise RuntimeError(f"copied {len(rows)} of {len(copies)} reusable keys")
    by_line: dict[int, list[int]] = {}
    for line_id, key_id in rows:
        by_line.setdefault(line_id, []).append(key_id)
    return by_line
