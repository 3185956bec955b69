"""The paid path: stored payment notices become paid, fulfilled orders.

``notices_apply`` is the one implementation: it works on a set of notices
(a flash sale's batch costs a handful of statements, whatever its size) and
a single notice is a batch of one. ``notice_route`` is the one function that
decides what a notice is: an ordinary credit (including late payments, over-
payments, multi-line orders and review holds, all handled by the set), or one
of the named exception paths in ``notice_paths``.

A batch ends exactly as applying its notices one by one, in order, would.
Notices that could see each other's effects never share a step: the batch is
cut into consecutive segments, a new one starting at the first notice that
touches what an earlier notice of the segment wrote (its payment, order,
trade id, buyer, or the stock a refund gives back). Within a segment the
credits go first, as a set, in notice order (the claim serves them in that
order), then the exception paths one by one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from payments.providers.base import CallbackNotice, NoticeKind
from payments.services import notice_paths as paths
from shop.models import Order, OrderLine, OrderStatus
from shop.project.locks import orders_lock, payments_lock
from shop.services import orders_fulfil, orders_mark_paid
from shop.services.events import event_payment_odd, events_save

CREDIT = "CREDIT"
# The exception paths, by name: what each does is in ``notice_paths``.
EXCEPTION_PATHS = {
    "UNKNOWN": paths.notice_unknown,
    "REFUND": paths.refund_notice_apply,
    "DISPUTE": paths.dispute_notice_apply,
    "DECLINED": paths.notice_declined,
    "IGNORED": paths.notice_ignored,
    "REFUSED": paths.payment_refuse,
    "EXTRA": paths.payment_flag_extra,
}


@dataclass(frozen=True)
class Route:
    path: str  # CREDIT or a key of EXCEPTION_PATHS
    code: str = ""


@dataclass
class _Books:
    """The batch's locked payments and orders, and what the rules look up."""

    by_ref: dict[tuple[str, str], Payment] = field(default_factory=dict)
    by_trade: dict[tuple[str, str], Payment] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    lines: dict[int, list[OrderLine]] = field(default_factory=dict)  # order id → its lines, with their products

    def payment_of(self, event: PaymentEvent, notice: CallbackNotice) -> Payment | None:
        if notice.reference:
            return self.by_ref.get((event.provider, notice.reference))
        if notice.transaction_id:  # refund and dispute notices name the payment, not our reference
            return self.by_trade.get((event.provider, notice.transaction_id))
        return None


def notice_route(*, event: PaymentEvent, notice: CallbackNotice, payment: Payment | None, order: Order | None,
                 books: _Books) -> Route:
    """Which path a notice takes, given its (locked) payment and order."""
    if payment is None:
        return Route("UNKNOWN", "ORDER_UNKNOWN")
    if notice.kind == NoticeKind.REFUND:
        return Route("REFUND")
    if notice.kind == NoticeKind.DISPUTE:
        return Route("DISPUTE")
    if not notice.succeeded:
        return Route("DECLINED")
    if payment.status != PaymentStatus.CREATED and payment.external_id == notice.payment_id:
        return Route("IGNORED", "ALREADY_APPLIED")
    if notice.currency != payment.currency:
        return Route("REFUSED", "CURRENCY_MISMATCH")
    if notice.amount < payment.amount:
        return Route("REFUSED", "AMOUNT_MISMATCH")
    if order.status == OrderStatus.REFUNDED:
        return Route("EXTRA", "ORDER_REFUNDED")
    if payment.status != PaymentStatus.CREATED or order.status not in (OrderStatus.PENDING_PAYMENT,
                                                                       OrderStatus.EXPIRED):
        return Route("EXTRA", "ALREADY_PAID")
    owner = books.by_trade.get((event.provider, notice.payment_id))
    if owner is not None and owner.pk != payment.pk:  # the provider reported one transaction id for two payments
        return Route("REFUSED", "TRANSACTION_REUSED")
    return Route(CREDIT, "OVERPAID" if notice.amount > payment.amount else "")


def notices_apply(*, events: list[PaymentEvent], outbox: list[int]) -> None:
    """Apply stored, locked RECEIVED notices, in id order. Call inside a
    transaction (the applier gives each batch a savepoint). The email and SMS
    deliveries written are appended to ``outbox``, for the caller to enqueue
    after commit."""
    if not events:
        return
    notices = {event.pk: notice_from_event(event) for event in events}
    books = _books_lock(events=events, notices=notices)
    for number, segment in enumerate(_segments(events=events, notices=notices, books=books)):
        if number:
            _books_refresh(books)
        routes = {}
        for event in segment:
            notice = notices[event.pk]
            payment = books.payment_of(event, notice)
            order = books.orders.get(payment.order_id) if payment else None
            event.payment = payment
            routes[event.pk] = (notice_route(event=event, notice=notice, payment=payment, order=order, books=books),
                                payment, order)
        credits = [(event, notices[event.pk], payment, order, route.code)
                   for event in segment for route, payment, order in [routes[event.pk]] if route.path == CREDIT]
        _payments_credit(credits=credits, books=books, outbox=outbox)
        for event in segment:
            route, payment, order = routes[event.pk]
            if route.path != CREDIT:
                EXCEPTION_PATHS[route.path](event=event, notice=notices[event.pk], payment=payment, order=order,
                                            code=route.code)


def notice_from_event(event: PaymentEvent) -> CallbackNotice:
    """The notice as the provider sent it, rebuilt from its stored row."""
    return CallbackNotice(
        external_id=event.external_id, reference=event.reference, amount=event.amount, currency=event.currency,
        succeeded=event.succeeded, payload=event.payload, kind=event.kind, transaction_id=event.transaction_id,
        verification=event.verification,
    )


def _trade_of(notice: CallbackNotice) -> str:
    return notice.payment_id if notice.kind == NoticeKind.PAYMENT else notice.transaction_id


def _per_provider(*, field_name: str, pairs) -> Q:
    """Rows whose (provider, ``field_name``) is among ``pairs``: one index
    range per provider (``field IN (...)``), not an OR per pair."""
    values: dict[str, list[str]] = defaultdict(list)
    for provider_id, value in pairs:
        if value:
            values[provider_id].append(value)
    which = Q(pk__in=[])
    for provider_id, of_provider in values.items():
        which |= Q(provider=provider_id, **{f"{field_name}__in": of_provider})
    return which


def _books_lock(*, events: list[PaymentEvent], notices: dict[int, CallbackNotice]) -> _Books:
    """Lock every payment the batch may touch, then their orders (the lock
    order: Payment → Order, each by id), and look up the rest in bulk."""
    refs = {(event.provider, notices[event.pk].reference) for event in events}
    trades = {(event.provider, _trade_of(notices[event.pk])) for event in events}
    payments = payments_lock(Payment.objects.filter(
        _per_provider(field_name="reference", pairs=refs) | _per_provider(field_name="external_id", pairs=trades)))
    books = _Books()
    for payment in payments:
        books.by_ref[(payment.provider, payment.reference)] = payment
        if payment.external_id:
            books.by_trade[(payment.provider, payment.external_id)] = payment
    books.orders = {order.pk: order for order in orders_lock(ids={payment.order_id for payment in payments})}
    for line in OrderLine.objects.filter(order_id__in=list(books.orders)).select_related("product", "order").order_by(
            "id"):
        books.lines.setdefault(line.order_id, []).append(line)
    return books


def _books_refresh(books: _Books) -> None:
    """Read the locked rows again: an earlier segment changed some."""
    fresh = {p.pk: p for p in Payment.objects.filter(pk__in=[p.pk for p in books.by_ref.values()])}
    books.by_ref = {key: fresh[p.pk] for key, p in books.by_ref.items()}
    books.by_trade = {(p.provider, p.external_id): p for p in fresh.values() if p.external_id}
    books.orders = {order.pk: order for order in Order.objects.filter(pk__in=list(books.orders))}


def _segments(*, events: list[PaymentEvent], notices: dict[int, CallbackNotice], books: _Books):
    """Cut the batch where a notice would see an earlier one's effects.

    Each notice reads and writes named things: its payment and order, its
    reference and trade id, its buyer's email (the history the assessment
    reads: the largest amount paid, refunds, disputes); a declined one
    writes the failed-payment counts of the buyer's address and device,
    which a payment's assessment reads; a refund may return stock, which a
    payment's claim reads. Payments of one product only read the stock: the
    set claims them in notice order, as one by one would."""
    # A trade id a payment of this batch will carry once credited (a refund
    # that names only it belongs to that payment).
    will_carry = {(event.provider, notices[event.pk].payment_id): books.by_ref.get((event.provider, notice.reference))
                  for event in events for notice in [notices[event.pk]]
                  if notice.kind == NoticeKind.PAYMENT and notice.reference}
    segment, reads, writes = [], set(), set()
    for event in events:
        notice = notices[event.pk]
        payment = books.payment_of(event, notice) or will_carry.get((event.provider, notice.transaction_id))
        order = books.orders.get(payment.order_id) if payment else None
        mine = {("ref", event.provider, notice.reference), ("trade", event.provider, _trade_of(notice))}
        read: set = set()
        if order is not None:
            mine |= {("order", order.pk), ("email", order.email.lower()), ("email", order.buyer_email)}
            buyer = {("failed", order.client_ip), ("failed", order.buyer_device)}
            stock = {("stock", line.product_id) for line in books.lines.get(order.pk, ())}
            if notice.kind == NoticeKind.PAYMENT and notice.succeeded:
                read = buyer | stock
            elif notice.kind == NoticeKind.PAYMENT:
                mine |= buyer
            elif notice.kind == NoticeKind.REFUND:
                mine |= stock
        mine, read = _named(mine), _named(read)
        if segment and (mine & (reads | writes) or read & writes):
            yield segment
            segment, reads, writes = [], set(), set()
        segment.append(event)
        writes |= mine
        reads |= read
    if segment:
        yield segment


def _named(keys: set) -> set:
    """The keys that name something (a notice without a trade id, or a buyer
    without a device, conflicts with nothing through it)."""
    return {key for key in keys if key[-1] not in ("", None)}


def _payments_credit(*, credits: list[tuple], books: _Books, outbox: list[int]) -> None:
    """Credit ordinary payment notices as a set: the payments SUCCEEDED and
    the orders PAID in a constant number of statements, the odd ones flagged,
    the orders fulfilled together, the notices ACCEPTED."""
    if not credits:
        return
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Payment._meta.db_table} AS p SET status = %s, external_id = v.external_id, succeeded_at = %s
            FROM unnest(%s::bigint[], %s::text[]) AS v(id, external_id)
            WHERE p.id = v.id AND p.status = %s
            """,
            [PaymentStatus.SUCCEEDED, now, [p.pk for _, _, p, _, _ in credits],
             [n.payment_id for _, n, _, _, _ in credits], PaymentStatus.CREATED],
        )
        if cursor.rowcount != len(credits):  # the payments are locked and CREATED: cannot happen
            raise RuntimeError(f"marked {cursor.rowcount} of {len(credits)} locked payments paid")
    paid_by_provider: dict[str, list] = defaultdict(list)
    for event, notice, payment, order, _ in credits:
        payment.status, payment.external_id, payment.succeeded_at = PaymentStatus.SUCCEEDED, notice.payment_id, now
        books.by_trade[(event.provider, notice.payment_id)] = payment
        paid_by_provider[event.provider].append((order, {"external_id": notice.payment_id, "amount": str(notice.amount)}))
    for provider_id, paid in paid_by_provider.items():
        orders_mark_paid(paid=paid, actor=f"provider:{provider_id}")

    earlier = _refunds_or_disputes_before(credits=credits)
    odd_events, codes, holds, closed = [], {}, {}, []
    for event, notice, payment, order, code in credits:
        before = earlier.get(event.pk)
        if before is not None:
            codes[event.pk] = paths.earlier_refund_code(before)
            odd_events.append(event_payment_odd(order, actor=f"provider:{event.provider}", reason=codes[event.pk],
                                                facts={"external_id": before.external_id,
                                                       "amount": str(before.amount)}))
            if paths.earlier_refund_is_full(earlier=before, payment=payment):
                closed.append(event.pk)
            else:
                holds[order.pk] = codes[event.pk]
        elif code == "OVERPAID":
            codes[event.pk] = code
            odd_events.append(paths.payment_overpaid_flag(event=event, payment=payment, order=order, notice=notice))
    events_save(*odd_events)
    orders_fulfil(orders=[order for event, _, _, order, _ in credits if event.pk not in closed], outbox=outbox,
                  hold_reasons=holds, lines_of=books.lines)
    for event, notice, payment, order, _ in credits:
        if event.pk in earlier:
            paths.payment_after_refund_or_dispute(event=event, payment=payment, order=order,
                                                  earlier=earlier[event.pk], notice=notice)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {PaymentEvent._meta.db_table} AS e SET outcome = %s, payment_id = v.payment_id,
                   reason_code = v.code
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS v(id, payment_id, code)
            WHERE e.id = v.id AND e.outcome = %s
            """,
            [PaymentEventOutcome.ACCEPTED, [e.pk for e, _, _, _, _ in credits], [p.pk for _, _, p, _, _ in credits],
             [codes.get(e.pk, "") for e, _, _, _, _ in credits], PaymentEventOutcome.RECEIVED],
        )
    for event, *_ in credits:
        event.outcome, event.reason_code = PaymentEventOutcome.ACCEPTED, codes.get(event.pk, "")


def _refunds_or_disputes_before(*, credits: list[tuple]) -> dict[int, PaymentEvent]:
    """A refund or dispute the provider reported before each payment's
    notice (providers deliver in any order), by the payment notice's id:
    found by the payment, our reference, or the provider's payment id (for
    one that named only that and was stored as ORDER_UNKNOWN)."""
    found = list(PaymentEvent.objects.filter(
        Q(payment__in=[p for _, _, p, _, _ in credits])
        | _per_provider(field_name="reference", pairs=[(e.provider, p.reference) for e, _, p, _, _ in credits])
        | _per_provider(field_name="transaction_id", pairs=[(e.provider, n.payment_id) for e, n, _, _, _ in credits]),
        kind__in=[NoticeKind.REFUND, NoticeKind.DISPUTE],
    ).order_by("id"))
    earlier = {}
    for event, notice, payment, _, _ in credits:
        for other in found:
            if other.pk != event.pk and other.provider == event.provider and (
                    other.payment_id == payment.pk or (other.reference and other.reference == payment.reference)
                    or (other.transaction_id and other.transaction_id == notice.payment_id)):
                earlier[event.pk] = other
                break
    return earlier
