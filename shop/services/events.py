"""The order timeline: one builder per event type (the buyer's timeline and
the staff's audit trail). A builder returns the unsaved event; ``events_save``
writes any number of them in one INSERT, so the set-based paid path and a
single step build the same rows.

Every ``OrderEvent`` the code writes is built here; the data keys of each
type are what the order page, the admin timeline and the API read.
"""

from __future__ import annotations

from decimal import Decimal

from shop.models import OrderEvent, OrderEventType

SYSTEM = "system"
BUYER = "buyer"

T = OrderEventType


def events_save(*events: OrderEvent) -> list[OrderEvent]:
    """Write the events (append-only) in one statement; returns them."""
    return OrderEvent.objects.bulk_create(events) if events else []


def _event(order, type: str, actor: str, data: dict | None = None) -> OrderEvent:
    if isinstance(order, int):
        return OrderEvent(order_id=order, type=type, actor=actor, data=data or {})
    return OrderEvent(order=order, type=type, actor=actor, data=data or {})


def _with(data: dict, **optional) -> dict:
    """``data`` plus the optional entries that are set."""
    return {**data, **{key: value for key, value in optional.items() if value}}


# --- checkout and payment ---------------------------------------------------------


def event_created(order, *, quantity: int, discount: Decimal = Decimal(0), coupon: str = "",
                  tier_percent: Decimal = Decimal(0)) -> OrderEvent:
    data = {"quantity": quantity}
    if discount:
        data.update(discount=str(discount), coupon=coupon, tier_percent=str(tier_percent))
    return _event(order, T.CREATED, BUYER, data)


def event_paid(order, *, actor: str, facts: dict, late: bool) -> OrderEvent:
    """``facts``: the provider's transaction id and the amount (as text)."""
    return _event(order, T.PAID, actor, {**facts, "late": late})


def event_payment_extra(order, *, actor: str, facts: dict) -> OrderEvent:
    """A second payment for a paid order: kept on record for a refund."""
    return _event(order, T.PAYMENT_EXTRA, actor, dict(facts))


def event_payment_rejected(order, *, actor: str, code: str, facts: dict) -> OrderEvent:
    return _event(order, T.PAYMENT_REJECTED, actor, {**facts, "code": code})


def event_payment_odd(order, *, actor: str, reason: str, facts: dict | None = None) -> OrderEvent:
    """An unusual payment (over-paid, extra, refunded or disputed before it
    arrived, a refund that failed...): ``reason`` says which."""
    return _event(order, T.PAYMENT_ODD, actor, {**(facts or {}), "reason": reason})


def event_manual_completion(order, *, actor: str, method: str, trade_no: str, verified: bool, reason: str,
                            why_unverified: str = "") -> OrderEvent:
    data = {"method": method, "trade_no": trade_no, "verified": verified}
    if not verified:
        data["why_unverified"] = why_unverified
    data["reason"] = reason[:300]
    return _event(order, T.MANUAL_COMPLETION, actor, data)


def events_imported(order, *, source: str, source_order: str, quantity: int, created_at, paid_at,
                    delivered_at, contact: str = "") -> list[OrderEvent]:
    """A past order brought across from another shop (``manage.py import_from``):
    its placing, payment and delivery there, each at its own time. The data
    names the shop and its order number; ``contact`` is what the buyer left
    when it was not an email (a QQ or phone number)."""
    actor = f"import:{source}"
    data = {"imported_from": source, "source_order": source_order}
    steps = [(T.CREATED, _with({**data, "quantity": quantity}, contact=contact), created_at),
             (T.PAID, data, paid_at), (T.DELIVERED, data, delivered_at)]
    events = []
    for type, step_data, at in steps:
        event = _event(order, type, actor, step_data)
        event.at = at
        events.append(event)
    return events


def event_expired(order, *, hold_expired_at) -> OrderEvent:
    return _event(order, T.EXPIRED, SYSTEM, {"hold_expired_at": hold_expired_at.isoformat()})


# --- fulfilment ---------------------------------------------------------------


def event_review_opened(order, *, ref: str, score: int, reason: str = "") -> OrderEvent:
    return _event(order, T.REVIEW_OPENED, SYSTEM, _with({"ref": ref, "score": score}, reason=reason))


def event_review_decided(order, *, approved: bool, actor: str, note: str) -> OrderEvent:
    return _event(order, T.REVIEW_APPROVED if approved else T.REVIEW_REJECTED, actor, {"note": note[:500]})


def event_awaiting_stock(order, *, wanted: int, free: int) -> OrderEvent:
    return _event(order, T.AWAITING_STOCK, SYSTEM, {"wanted": wanted, "free": free})


def event_stock_filled(order) -> OrderEvent:
    return _event(order, T.STOCK_FILLED, SYSTEM)


def event_keys_reserved(order, *, keys: int) -> OrderEvent:
    return _event(order, T.KEYS_RESERVED, SYSTEM, {"keys": keys})


def event_keys_released(order, *, actor: str, keys: int) -> OrderEvent:
    return _event(order, T.KEYS_RELEASED, actor, {"keys": keys})


def event_key_replaced(order, *, actor: str, old_key: int, new_key: int, reason: str) -> OrderEvent:
    return _event(order, T.KEY_REPLACED, actor, {"old_key": old_key, "new_key": new_key, "reason": reason[:200]})


def event_key_reported(order, *, key: int, report: int) -> OrderEvent:
    return _event(order, T.KEY_REPORTED, BUYER, {"key": key, "report": report})


def event_manual_queued(order, *, due_at) -> OrderEvent:
    """A paid manual order went to the staff's fulfilment queue."""
    return _event(order, T.MANUAL_QUEUED, SYSTEM, {"due_at": due_at.isoformat()})


def event_manual_delivered(order, *, actor: str, late: bool) -> OrderEvent:
    """Staff entered the order's content (never in the event: it is sealed on the key)."""
    return _event(order, T.MANUAL_DELIVERED, actor, {"late": late})


def event_answers_viewed(order, *, actor: str, ip: str | None) -> OrderEvent:
    """Staff opened the buyer's sealed answers (a game password, say): on the
    staff's trail, as a key reveal is on the key's; never on the buyer's timeline."""
    return _event(order, T.ANSWERS_VIEWED, actor, _with({}, ip=ip))


# --- delivery -------------------------------------------------------------------


def event_delivery_sent(order, *, channel: str) -> OrderEvent:
    return _event(order, T.DELIVERY_SENT, SYSTEM, {"channel": channel})


def event_delivery_failed(order, *, channel: str, attempts: int, reason: str = "") -> OrderEvent:
    return _event(order, T.DELIVERY_FAILED, SYSTEM,
                  _with({"channel": channel, "attempts": attempts}, reason=reason[:200]))


def event_delivered(order) -> OrderEvent:
    return _event(order, T.DELIVERED, SYSTEM)


def event_resend_requested(order, *, actor: str, channels: list[str], note: str = "") -> OrderEvent:
    return _event(order, T.RESEND_REQUESTED, actor, _with({"channels": channels}, note=note[:500]))


def event_links_revoked(order, *, actor: str, link_version: int, note: str = "") -> OrderEvent:
    return _event(order, T.LINKS_REVOKED, actor, _with({"link_version": link_version}, note=note))


# --- refunds and disputes -----------------------------------------------------------


def event_refund_requested(order, *, actor: str, reason: str) -> OrderEvent:
    return _event(order, T.REFUND_REQUESTED, actor, {"reason": reason})


def event_refunded(order, *, actor: str, data: dict) -> OrderEvent:
    return _event(order, T.REFUNDED, actor, dict(data))


def event_dispute_opened(order, *, actor: str, external_id: str, amount: Decimal, reason: str) -> OrderEvent:
    return _event(order, T.DISPUTE_OPENED, actor, {"external_id": external_id, "amount": str(amount),
                                                   "reason": reason})
