"""Manual products (代充): the buyer's answers at checkout, the staff's
fulfilment queue, and the delivery staff type in.

The answers are sealed like card keys (they may hold a game account's
password). A paid manual order waits in the queue (PREPARING) with a due
time; staff's content becomes a key held for the order line
(``inventory.services.key_manual_hold``) and the order then takes the same
path as an AWAITING_STOCK order whose stock arrived (``order_fulfil``): the
claim, the inbox, the email and SMS outbox, the timeline, resend.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, OwnerAlert
from inventory import services as inventory_services
from inventory.sealing import blob_open, blob_seal, sealed_by_primary
from shop.models import ManualAnswers, ManualField, ManualFieldType, Order, OrderStatus, ProductKind
from shop.project.locks import order_lock
from shop.project.paging import keyset_rows
from shop.services.checkout_errors import CheckoutError
from shop.services.events import event_answers_viewed, event_manual_delivered, event_manual_queued, events_save
from shop.services.lifecycle import OrderTransitionError, orders_move

S = OrderStatus

# The longest answer a text field takes when the owner set no limit.
ANSWER_MAX_LENGTH = 500


class ManualFieldError(CheckoutError):
    """An answer the checkout refuses: FIELD_REQUIRED or FIELD_INVALID, with
    the field (``field`` is ``fields.<key>``) and why (``reason``: required,
    too_long, not_a_number, too_small, too_big, not_a_choice, unknown)."""

    def __init__(self, *, code: str, message: str, key: str, reason: str, manual_field: ManualField | None = None):
        super().__init__(code=code, message=message, field=f"fields.{key}")
        self.key = key
        self.reason = reason
        self.manual_field = manual_field


def manual_fields_of(*, product) -> list[ManualField]:
    """The product's fields in order; a manual variant without fields of its own asks its product's.
    A product of another kind asks nothing (no query): checkout would drop the answers."""
    if product.kind != ProductKind.MANUAL:
        return []
    own = list(product.manual_fields.order_by("position", "id"))
    if own or product.parent_id is None:
        return own
    return list(ManualField.objects.filter(product_id=product.parent_id).order_by("position", "id"))


def _matches(pattern: str, value: str) -> bool:
    """Whether the answer matches the owner's check somewhere (a search, as
    acg-faka's ``preg_match``, so imported checks keep their meaning). A
    check that no longer compiles refuses nothing: the model's validator
    keeps new ones valid, and a buyer should not pay for an owner's typo."""
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True


def _answer_clean(field: ManualField, raw) -> str:
    """One answer as stored (text), or ManualFieldError."""
    def refuse(reason: str, message: str):
        return ManualFieldError(code="FIELD_INVALID", message=f"{field.label}: {message}", key=field.key,
                                reason=reason, manual_field=field)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, type(None))):
        raise refuse("not_a_number" if field.type == ManualFieldType.NUMBER else "too_long", "must be text.")
    value = "" if raw is None else str(raw).strip()
    if not value:
        if field.required:
            raise ManualFieldError(code="FIELD_REQUIRED", message=f"Fill in {field.label}.", key=field.key,
                                   reason="required", manual_field=field)
        return ""
    if field.type == ManualFieldType.NUMBER:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise refuse("not_a_number", "must be a number.") from None
        if not number.is_finite():
            raise refuse("not_a_number", "must be a number.")
        if field.min_value is not None and number < field.min_value:
            raise refuse("too_small", f"must be at least {field.min_value}.")
        if field.max_value is not None and number > field.max_value:
            raise refuse("too_big", f"must be at most {field.max_value}.")
    elif field.type == ManualFieldType.SELECT and value not in field.choice_list:
        raise refuse("not_a_choice", f"choose one of: {', '.join(field.choice_list)}.")
    elif field.pattern and not _matches(field.pattern, value):
        raise refuse("no_match", field.display_pattern_message or "does not have the expected form.")
    limit = min(field.max_length or ANSWER_MAX_LENGTH, ANSWER_MAX_LENGTH)
    if len(value) > limit:
        raise refuse("too_long", f"at most {limit} characters.")
    return value


def manual_answers_clean(*, product, answers: dict | None) -> list[dict]:
    """The buyer's answers to a manual product's fields, checked, in the
    fields' order: ``[{key, label, value}]`` (empty for another kind).
    Raises ManualFieldError for the first field that is missing or wrong,
    or for an answer to a field the product does not have."""
    if product.kind != ProductKind.MANUAL:
        return []
    answers = answers or {}
    fields = manual_fields_of(product=product)
    known = {field.key for field in fields}
    for key in answers:
        if key not in known:
            raise ManualFieldError(code="FIELD_INVALID", message=f"This product has no field {key!r}.",
                                   key=str(key)[:40], reason="unknown")
    return [{"key": field.key, "label": field.label, "value": _answer_clean(field, answers.get(field.key))}
            for field in fields]


def manual_answers_aad(line_id: int) -> bytes:
    """What the answers are sealed to: their order line (moved to another, they do not open)."""
    return f"kamidrop-manual-answers:{line_id}".encode()


def manual_answers_save(*, line, answers: list[dict]) -> None:
    """Seal the answers onto the order line. Call inside the checkout's transaction."""
    ManualAnswers.objects.create(order_line=line, answers_sealed=blob_seal(
        json.dumps(answers, ensure_ascii=False), aad=manual_answers_aad(line.pk)))


def manual_answers_read(*, order) -> list[dict]:
    """The order's answers, opened: ``[{key, label, value}]`` of every line."""
    rows = ManualAnswers.objects.filter(order_line__order=order).order_by("order_line_id")
    return [answer for row in rows for answer in
            json.loads(blob_open(bytes(row.answers_sealed), aad=manual_answers_aad(row.order_line_id)))]


def manual_answers_open(*, order, user, ip: str | None) -> list[dict]:
    """The buyer's answers for staff to act on, the opening recorded on the
    order's staff trail (who, when, from where)."""
    answers = manual_answers_read(order=order)
    if answers:
        events_save(event_answers_viewed(order, actor=f"staff:{user.get_username()}", ip=ip))
    return answers


def manual_answers_reseal() -> int:
    """Re-seal every order's answers under the first of KEY_ENCRYPTION_KEYS
    (``manage.py rotate_keys``). Returns how many changed."""
    resealed = 0
    for row in keyset_rows(ManualAnswers.objects.all(), chunk_size=500):
        if sealed_by_primary(bytes(row.answers_sealed)):
            continue
        aad = manual_answers_aad(row.order_line_id)
        plain = blob_open(bytes(row.answers_sealed), aad=aad)
        ManualAnswers.objects.filter(pk=row.pk).update(answers_sealed=blob_seal(plain, aad=aad))
        resealed += 1
    return resealed


def lines_manual(lines) -> bool:
    """Whether the lines (with their products) are a manual product's."""
    return any(line.product.kind == ProductKind.MANUAL for line in lines)


def orders_queue_manual(*, orders: list[Order], lines_of: dict[int, list], source: str) -> None:
    """Put paid manual orders in the staff's fulfilment queue (PREPARING, due
    after their product's ``fulfil_within_minutes``), on the buyer's
    timeline, and tell the owner, once per order. Call inside a transaction
    holding the orders' locks."""
    if not orders:
        return
    now = timezone.now()
    for order in orders:
        minutes = min(line.product.fulfil_within_minutes for line in lines_of[order.pk])
        orders_move(orders=[order], source=[source], target=S.PREPARING, fulfil_due_at=now + timedelta(minutes=minutes))
    events_save(*(event_manual_queued(order, due_at=order.fulfil_due_at) for order in orders))
    for order in orders:
        owner_alert_raise(
            kind=AlertKind.MANUAL_QUEUE, dedupe_key=f"manual-queue:{order.order_no}",
            subject=f"Manual order {order.order_no} waits for staff",
            body=f"Deliver it by {timezone.localtime(order.fulfil_due_at):%Y-%m-%d %H:%M %Z}: "
                 "Shop → Manual fulfilment queue.")


class ManualDeliveryError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ManualDelivered:
    order: Order
    status: str


def order_manual_deliver(*, order_id: int, content: str, user) -> ManualDelivered:
    """Staff deliver a queued manual order by hand: ``content`` is sealed as
    the line's key and the order is fulfilled like one whose stock arrived
    (inbox now, email and SMS from the outbox after commit). The event names
    who delivered it; never the content."""
    from shop.services.fulfilment import order_fulfil  # fulfilment queues manual orders through this module

    content = (content or "").strip()
    if not content:
        raise ManualDeliveryError("CONTENT_REQUIRED", "Enter what the buyer gets.")
    actor = f"staff:{user.get_username()}"
    with transaction.atomic():
        order = order_lock(id=order_id)
        if order.status != S.PREPARING:
            raise OrderTransitionError(order=order, wanted="delivered by hand")
        lines = list(order.lines.select_related("product").order_by("id"))
        for line in lines:
            if line.product.kind == ProductKind.MANUAL:
                inventory_services.key_manual_hold(line_id=line.pk, product_id=line.product_id, content=content,
                                                   actor=actor, detail=f"entered by staff for order {order.order_no}")
        events_save(event_manual_delivered(order, actor=actor, late=order.fulfil_due_at is not None
                                           and order.fulfil_due_at < timezone.now()))
        status = order_fulfil(order=order)
    return ManualDelivered(order=order, status=status)


def manual_orders_overdue_alert() -> int:
    """Tell the owner about every queued manual order past its due time, once
    per order (an alert of its own, never raised again for that order, even
    after the owner acknowledged it). Returns how many are overdue."""
    overdue = list(Order.objects.filter(status=S.PREPARING, fulfil_due_at__lt=timezone.now())
                   .order_by("fulfil_due_at", "id").values_list("order_no", "fulfil_due_at"))
    keys = {order_no: f"manual-overdue:{order_no}" for order_no, _ in overdue}
    told = set(OwnerAlert.objects.filter(kind=AlertKind.MANUAL_OVERDUE, dedupe_key__in=list(keys.values()))
               .values_list("dedupe_key", flat=True))
    for order_no, due_at in overdue:
        if keys[order_no] in told:
            continue
        owner_alert_raise(
            kind=AlertKind.MANUAL_OVERDUE, dedupe_key=keys[order_no],
            subject=f"Manual order {order_no} is overdue",
            body=f"It was due by {timezone.localtime(due_at):%Y-%m-%d %H:%M %Z}: Shop → Manual fulfilment queue.")
    return len(overdue)
