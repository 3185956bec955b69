"""The applier's common case, set-based: a batch of ordinary paid notices
(a successful payment of the exact price, for an unpaid order, under a trade
id seen nowhere else) is applied in a handful of statements, whatever its
size, instead of some twenty per notice.

Everything else in the batch (refunds, disputes, declines, odd amounts,
repeats, unknown orders) and every notice of a batch that fails here takes
the one-notice path in ``callbacks``, with its savepoint: what happens to a
notice does not depend on which path applied it.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from payments.providers.base import CallbackNotice, NoticeKind
from shop.models import Order, OrderStatus
from shop.services import orders_fulfil_paid, orders_mark_paid

logger = logging.getLogger(__name__)


def notices_apply_together(*, events: list[PaymentEvent], notices: dict[int, CallbackNotice],
                           outbox: list[int]) -> set[int]:
    """Apply the ordinary paid notices among ``events`` (locked, RECEIVED;
    ``notices`` by event id) together, in a savepoint of the caller's
    transaction; return the ids of the events applied (ACCEPTED), the others
    are left untouched for the one-notice path. The email and SMS
    deliveries written are appended to ``outbox``.

    If anything here fails, the savepoint rolls back and nothing is applied:
    the one-notice path then applies each notice on its own, so one bad
    notice costs the batch its speed, never the other notices.
    """
    candidates: dict[tuple[str, str], PaymentEvent] = {}
    for event in events:
        notice = notices[event.pk]
        if notice.kind == NoticeKind.PAYMENT and notice.succeeded and notice.reference:
            candidates.setdefault((event.provider, notice.reference), event)  # a repeat waits for the one path
    if not candidates:
        return set()
    try:
        with transaction.atomic():
            return _apply(candidates=candidates, notices=notices, outbox=outbox)
    except Exception:  # noqa: BLE001 - the one-notice path isolates whatever broke this
        logger.exception("a batch of %d notices could not be applied together; applying them one by one",
                         len(candidates))
        return set()


def _per_provider(*, field: str, pairs) -> Q:
    """Payments whose (provider, ``field``) is among ``pairs``: one index
    range per provider (``field IN (...)``), not an OR per pair."""
    values: dict[str, list[str]] = defaultdict(list)
    for provider_id, value in pairs:
        values[provider_id].append(value)
    which = Q(pk__in=[])
    for provider_id, of_provider in values.items():
        which |= Q(provider=provider_id, **{f"{field}__in": of_provider})
    return which


def _apply(*, candidates: dict[tuple[str, str], PaymentEvent], notices: dict[int, CallbackNotice],
           outbox: list[int]) -> set[int]:
    # Lock order as everywhere: Payment → Order, each by id.
    which = _per_provider(field="reference", pairs=candidates)
    payments = {(p.provider, p.reference): p for p in Payment.objects.select_for_update().filter(which).order_by("id")}
    orders = {o.pk: o for o in Order.objects.select_for_update().filter(
        pk__in=[p.order_id for p in payments.values()]).order_by("id")}
    trades = _per_provider(field="external_id",
                           pairs=[(event.provider, notices[event.pk].payment_id) for event in candidates.values()])
    known_trades = set(Payment.objects.filter(trades).values_list("provider", "external_id"))
    # A refund or dispute reported before its payment: the one-notice path holds that order.
    events_before = list(PaymentEvent.objects.filter(
        _per_provider(field="reference", pairs=candidates)
        | _per_provider(field="transaction_id", pairs=[(event.provider, notices[event.pk].payment_id)
                                                       for event in candidates.values()]),
        kind__in=[NoticeKind.REFUND, NoticeKind.DISPUTE],
    ).values_list("provider", "reference", "transaction_id"))
    flagged = {(p, r) for p, r, _ in events_before} | {(p, t) for p, _, t in events_before}

    ordinary: list[tuple[PaymentEvent, CallbackNotice, Payment, Order]] = []
    for key, event in candidates.items():
        notice, payment = notices[event.pk], payments.get(key)
        if payment is None:
            continue
        order = orders[payment.order_id]
        trade = (event.provider, notice.payment_id)
        if (payment.status != PaymentStatus.CREATED or order.status not in (OrderStatus.PENDING_PAYMENT,
                                                                           OrderStatus.EXPIRED)
                or notice.currency != payment.currency or notice.amount != payment.amount or trade in known_trades
                or key in flagged or trade in flagged):
            continue  # odd: the one-notice path says what it is
        known_trades.add(trade)  # the same trade id twice in one batch: the second is odd
        ordinary.append((event, notice, payment, order))
    if not ordinary:
        return set()

    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Payment._meta.db_table} AS p SET status = %s, external_id = v.external_id, succeeded_at = %s
            FROM unnest(%s::bigint[], %s::text[]) AS v(id, external_id)
            WHERE p.id = v.id AND p.status = %s
            """,
            [PaymentStatus.SUCCEEDED, now, [p.pk for _, _, p, _ in ordinary],
             [n.payment_id for _, n, _, _ in ordinary], PaymentStatus.CREATED],
        )
        if cursor.rowcount != len(ordinary):  # the payments are locked and CREATED: cannot happen
            raise RuntimeError(f"marked {cursor.rowcount} of {len(ordinary)} locked payments paid")
    paid_by_provider: dict[str, list] = defaultdict(list)
    for event, notice, _, order in ordinary:
        paid_by_provider[event.provider].append(
            (order, {"external_id": notice.payment_id, "amount": str(notice.amount)}))
    for provider_id, paid in paid_by_provider.items():
        orders_mark_paid(paid=paid, actor=f"provider:{provider_id}")
    orders_fulfil_paid(orders=[order for _, _, _, order in ordinary], outbox=outbox)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {PaymentEvent._meta.db_table} AS e SET outcome = %s, payment_id = v.payment_id
            FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, payment_id)
            WHERE e.id = v.id AND e.outcome = %s
            """,
            [PaymentEventOutcome.ACCEPTED, [e.pk for e, _, _, _ in ordinary], [p.pk for _, _, p, _ in ordinary],
             PaymentEventOutcome.RECEIVED],
        )
    return {event.pk for event, _, _, _ in ordinary}
