"""The claim: keys for paid order lines, set-based, and what follows it
(hand-over to the buyer, release back to stock).

One implementation claims for one order line and for a flash sale's batch:
``keys_claim`` takes any number of requests (an order's lines each) and
serves them in the order given, each all-or-nothing, exactly as claiming them
one after another would; ``keys_reserve`` is a request of one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from inventory.services.holds import keys_unhold
from inventory.services.reusable import keys_copy, reusable_stock_lock


class KeysUnavailable(Exception):
    """Fewer available keys than the order line needs (nothing was claimed)."""

    code = "OUT_OF_STOCK"

    def __init__(self, *, wanted: int, claimed: int):
        super().__init__(f"wanted {wanted} keys, only {claimed} free")
        self.wanted = wanted
        self.claimed = claimed


@dataclass(frozen=True)
class LineClaim:
    """One order line to claim keys for: its id, product, how many keys, and
    the audit detail ("order 2611…")."""

    line_id: int
    product_id: int
    quantity: int
    detail: str
    # False: only keys held for this very line count (a manual product's
    # content, entered by staff); nothing comes from stock.
    from_stock: bool = True


@dataclass(frozen=True)
class ClaimRequest:
    """An order's lines, served together or not at all. ``reveal``: hand the
    keys over at once (DELIVERED); otherwise they are set aside (RESERVED),
    e.g. for an order held for review."""

    lines: list[LineClaim]
    reveal: bool = True


@dataclass(frozen=True)
class ClaimOutcome:
    keys: dict[int, list[int]]  # line id → its keys (empty when short)
    short: tuple[int, int] | None = None  # (wanted, free) of the first line that could not be served


def keys_claim(*, requests: list[ClaimRequest], actor: str = "system") -> list[ClaimOutcome]:
    """Claim keys for every request, in the order given; return an outcome
    per request. Call inside a transaction (after the orders' locks).

    A line first gets the keys its checkout held for it (HELD, see
    ``holds.py``); what it still needs comes from stock. Three statements
    whatever the batch's size: the held keys of the requests' lines are
    locked; the oldest free keys of each product, as many as all requests
    still want, are locked with SKIP LOCKED (concurrent claims take different
    keys instead of queueing on the same rows); they are dealt out here, a
    request getting all its lines' keys or none, a short request taking
    nothing and leaving the free keys, and those held for it, to the
    requests after it (exactly as one claim after another would); then one
    UPDATE moves the dealt keys and writes their audit rows (SOLD, and
    DELIVERED for revealed ones), checking the affected rows. A line of a
    reusable product gets copies of its stock keys instead (``reusable.py``);
    a line that does not take from stock (``LineClaim.from_stock``: a manual
    product's, whose content staff entered) gets only the keys held for it.
    """
    reusable = reusable_stock_lock(product_ids={line.product_id for request in requests for line in request.lines})
    held = _keys_lock_held(line_ids=[line.line_id for request in requests for line in request.lines])
    wanted: dict[int, int] = defaultdict(int)
    for request in requests:
        for line in request.lines:
            if line.product_id not in reusable and line.from_stock:
                wanted[line.product_id] += max(0, line.quantity - len(held.get(line.line_id, ())))
    free = _keys_lock_free(wanted=wanted)
    outcomes, dealt, unheld, copies = [], [], [], []  # dealt: (key id, line, reveal)
    for request in requests:
        left = defaultdict(int, {product_id: len(ids) for product_id, ids in free.items()})
        need = {line.line_id: max(0, line.quantity - len(held.get(line.line_id, ()))) for line in request.lines}
        short = None
        for line in request.lines:
            if line.product_id in reusable:
                stock = reusable[line.product_id]
                if not stock.can_sell(line.quantity):
                    short = (line.quantity, min(stock.left, line.quantity) if stock.keys and stock.left is not None
                             else 0)
                    break
                continue
            if left[line.product_id] < need[line.line_id]:
                short = (line.quantity, left[line.product_id] + len(held.get(line.line_id, ())))
                break
            left[line.product_id] -= need[line.line_id]
        if short is not None:
            outcomes.append(ClaimOutcome(keys={}, short=short))
            for line in request.lines:  # its held keys are free again, for the requests after it
                if line.product_id in reusable:
                    continue
                if not line.from_stock:  # its content stays held for it, for staff to deliver
                    continue
                returned = held.pop(line.line_id, [])
                unheld += returned
                free[line.product_id] = sorted(free[line.product_id] + returned)
            continue
        taking: dict[int, list[int]] = {}
        for line in request.lines:
            if line.product_id in reusable:
                taking[line.line_id] = []  # filled once the copies exist
                copies += [(key_id, line.line_id, request.reveal, line.detail)
                           for key_id in reusable[line.product_id].sell(line.quantity)]
                continue
            own = held.get(line.line_id, [])[:line.quantity]
            taking[line.line_id] = own + free.get(line.product_id, [])[:need[line.line_id]]
            if need[line.line_id]:
                del free[line.product_id][:need[line.line_id]]
            dealt += [(key_id, line, request.reveal) for key_id in taking[line.line_id]]
        outcomes.append(ClaimOutcome(keys=taking))
    _keys_deal(dealt=dealt, actor=actor)
    keys_unhold(key_ids=set(unheld) - {key_id for key_id, _, _ in dealt})
    taken = {line_id: keys for outcome in outcomes for line_id, keys in outcome.keys.items()}
    for line_id, key_ids in keys_copy(copies=copies, actor=actor).items():
        taken[line_id].extend(key_ids)
    return outcomes


def _keys_lock_held(*, line_ids: list[int]) -> dict[int, list[int]]:
    """Lock the keys held for these order lines; their ids by line, oldest first."""
    if not line_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT order_line_id, id FROM {CardKey._meta.db_table} WHERE order_line_id = ANY(%s) AND status = %s"
            " ORDER BY id FOR UPDATE",
            [list(line_ids), CardKeyStatus.HELD],
        )
        rows = cursor.fetchall()
    held: dict[int, list[int]] = defaultdict(list)
    for line_id, key_id in rows:
        held[line_id].append(key_id)
    return held


def _keys_lock_free(*, wanted: dict[int, int]) -> dict[int, list[int]]:
    """Lock up to ``wanted[product]`` of the oldest free keys of each product
    (SKIP LOCKED); their ids by product, oldest first."""
    if not wanted:
        return {}
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT w.product_id, k.id
            FROM unnest(%s::bigint[], %s::int[]) AS w(product_id, n)
            CROSS JOIN LATERAL (
                SELECT id FROM {table}
                WHERE product_id = w.product_id AND status = %s
                ORDER BY id + 0  -- the claim index's order (see CardKey.Meta.indexes)
                LIMIT w.n
                FOR UPDATE{" SKIP LOCKED" if settings.INVENTORY_CLAIM_SKIP_LOCKED else ""}
            ) AS k
            """,
            [list(wanted), list(wanted.values()), CardKeyStatus.AVAILABLE],
        )
        rows = cursor.fetchall()
    free: dict[int, list[int]] = {product_id: [] for product_id in wanted}
    for product_id, key_id in rows:
        free[product_id].append(key_id)
    for ids in free.values():
        ids.sort()
    return free


def _keys_deal(*, dealt: list[tuple[int, LineClaim, bool]], actor: str) -> None:
    """Move the dealt (locked: AVAILABLE, or HELD) keys to their lines and audit them,
    in one statement; the affected rows are checked."""
    if not dealt:
        return
    table = CardKey._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH dealt AS (
                SELECT * FROM unnest(%(keys)s::bigint[], %(lines)s::bigint[], %(reveal)s::boolean[],
                                     %(details)s::text[]) AS d(key_id, line_id, reveal, detail)
            ), claimed AS (
                UPDATE {table} AS k
                SET status = CASE WHEN d.reveal THEN %(delivered)s ELSE %(reserved)s END,
                    order_line_id = d.line_id, reserved_at = %(now)s,
                    delivered_at = CASE WHEN d.reveal THEN %(now)s::timestamptz END
                FROM dealt d
                WHERE k.id = d.key_id AND k.status IN (%(available)s, %(held)s)  -- all locked above
                RETURNING k.id, d.reveal, d.detail
            ), audited AS (
                INSERT INTO {KeyAuditEvent._meta.db_table} (card_key_id, action, actor, ip, at, detail)
                SELECT c.id, a.action, %(actor)s, NULL, %(now)s, c.detail
                FROM claimed c JOIN (VALUES (1, %(sold)s), (2, %(handed)s)) AS a(step, action)
                     ON a.step = 1 OR c.reveal
                ORDER BY c.id, a.step
            )
            SELECT count(*) FROM claimed
            """,
            {
                "keys": [key_id for key_id, _, _ in dealt], "lines": [line.line_id for _, line, _ in dealt],
                "reveal": [reveal for _, _, reveal in dealt], "details": [line.detail for _, line, _ in dealt],
                "available": CardKeyStatus.AVAILABLE, "held": CardKeyStatus.HELD, "reserved": CardKeyStatus.RESERVED,
                "delivered": CardKeyStatus.DELIVERED, "now": now, "actor": actor,
                "sold": KeyAuditEvent.Action.SOLD, "handed": KeyAuditEvent.Action.DELIVERED,
            },
        )
        (moved,) = cursor.fetchone()
    if moved != len(dealt):  # rows changed under their lock: let the caller's transaction roll back
        raise RuntimeError(f"claimed {moved} of {len(dealt)} locked keys")


def line_claim(line, *, quantity: int | None = None, from_stock: bool = True) -> LineClaim:
    """The claim of an ``OrderLine`` (all its keys, or ``quantity``)."""
    # The order number is already loaded wherever the paid flow passes a line
    # (it comes from ``order.lines``); the line id is the fallback.
    if line._meta.get_field("order").is_cached(line):
        detail = f"order {line.order.order_no}"
    else:
        detail = f"order line {line.pk}"
    return LineClaim(line_id=line.pk, product_id=line.product_id,
                     quantity=line.quantity if quantity is None else quantity, detail=detail, from_stock=from_stock)


def keys_reserve(*, line, quantity: int | None = None, actor: str = "system") -> list[int]:
    """Set aside ``quantity`` (default: the line's quantity) available keys of
    the line's product for it (RESERVED): a claim of one request. All or
    none: a short claim changes nothing and raises ``KeysUnavailable``."""
    (outcome,) = keys_claim(requests=[ClaimRequest(lines=[line_claim(line, quantity=quantity)], reveal=False)],
                            actor=actor)
    if outcome.short is not None:
        raise KeysUnavailable(wanted=outcome.short[0], claimed=outcome.short[1])
    return outcome.keys[line.pk]


def keys_mark_delivered(*, line, actor: str = "system") -> int:
    """Move the line's reserved keys to DELIVERED (audited). Call inside a transaction."""
    now = timezone.now()
    return _keys_move(line=line, sets="status = %s, delivered_at = %s", set_params=[CardKeyStatus.DELIVERED, now],
                      action=KeyAuditEvent.Action.DELIVERED, actor=actor, now=now)


def keys_release(*, line, actor: str = "system") -> int:
    """Return the line's RESERVED keys to stock (reject, refund). Call inside a
    transaction. Delivered keys are never released: the buyer has seen them.
    A copy of a reusable key is voided instead (the sale is undone; its key
    never left stock)."""
    now = timezone.now()
    return _keys_move(
        line=line,
        sets="status = CASE WHEN source_id IS NULL THEN %s ELSE %s END,"
             " order_line_id = CASE WHEN source_id IS NULL THEN NULL ELSE order_line_id END,"
             " reserved_at = CASE WHEN source_id IS NULL THEN NULL ELSE reserved_at END,"
             " voided_at = CASE WHEN source_id IS NULL THEN voided_at ELSE %s END,"
             " void_reason = CASE WHEN source_id IS NULL THEN void_reason ELSE %s END",
        set_params=[CardKeyStatus.AVAILABLE, CardKeyStatus.VOID, now, "sale of a reusable key undone"],
        action=KeyAuditEvent.Action.RELEASED, actor=actor, now=now,
    )


def _keys_move(*, line, sets: str, set_params: list, action: str, actor: str, now) -> int:
    """Move the line's RESERVED keys (``SET sets``) and write one audit row
    each, in one statement."""
    table = CardKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH moved AS (
                UPDATE {table} SET {sets}
                WHERE order_line_id = %s AND status = %s
                RETURNING id
            ), audited AS (
                INSERT INTO {KeyAuditEvent._meta.db_table} (card_key_id, action, actor, ip, at, detail)
                SELECT id, %s, %s, NULL, %s, %s FROM moved
            )
            SELECT count(*) FROM moved
            """,
            [*set_params, line.pk, CardKeyStatus.RESERVED, action, actor, now, line_claim(line).detail],
        )
        return cursor.fetchone()[0]
