"""Starting a payment at checkout and handling the provider's callback.

The callback path is where shops lose or double-count money: the signature
is verified before the database is touched (by the provider, in
``parse_callback``); the notify endpoint then stores the notice under its
unique (provider, external id) key and answers. The applier takes stored
notices in batches; for each, in its own savepoint of the batch's one
transaction, it checks the notice against the payment, locks Payment → Order,
moves the order to PAID and fulfils it.

Money is never dropped: a payment for an expired order is fulfilled, one for
a refunded or already-paid order is recorded, flagged on the order and raised
to the owner; an amount above the price is accepted and flagged, one below it
is rejected and raised.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Q
from django.utils import timezone
from psycopg.types.json import Jsonb
from redis.exceptions import RedisError
from rq import Retry

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from delivery.services import deliveries_enqueue
from payments.models import (
    Payment,
    PaymentEvent,
    PaymentEventOutcome,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.providers.base import CallbackNotice, NoticeKind
from payments.providers.sandbox import NotifyMode, sandbox_paid_amount, sandbox_trade_record
from payments.services.batch import notices_apply_together
from payments.services.confirm import (
    CONFIRMED,
    NoticeUnconfirmed,
    methods_confirming,
    notice_needs_confirmation,
    notices_confirm,
)
from riskctl.models import RiskEventKind
from riskctl.services import risk_event_for_order
from shop.models import Order, OrderEventType, OrderStatus
from shop.services import (
    REFUNDABLE_STATUSES,
    order_event_record,
    order_fulfil,
    order_mark_paid,
    order_refund_begin,
    order_refund_complete,
)

logger = logging.getLogger(__name__)

# Seconds between the sandbox gateway's notify attempts (a real gateway's back-off, shortened).
SANDBOX_NOTIFY_RETRIES = [1, 2, 5, 10, 30, 60]


@dataclass(frozen=True)
class CallbackOutcome:
    accepted: bool
    code: str = ""
    duplicate: bool = False


# The notify endpoint answers once the notice is stored; the applier (an RQ
# job on this queue, woken through a flag so a burst wakes it once) turns
# stored notices into paid orders in batches.
APPLY_QUEUE = "payments"
APPLY_FLAG = "kamidrop:payments:apply-wanted"  # holds the id of the job that will clear it
# The flag only has to outlive the trip of its job from the queue to its
# first statement: milliseconds when a worker is free. A worker killed
# between taking the job and starting it loses the job, and its flag then
# swallows every wake-up until it expires: this is how long payments may
# stall. A job that waits in the queue longer than this (every worker busy)
# gets a second one beside it at the next notice: at worst an empty batch.
APPLY_FLAG_TTL = 3
APPLY_JOB_TIMEOUT = 180
APPLY_ERROR_CHARS = 500


def payment_notice_receive(*, provider_id: str, notice: CallbackNotice) -> CallbackOutcome:
    """The notify endpoint's part: store the verified notice (the inbox) and
    wake the applier. Call outside any transaction.

    One INSERT, committed before this returns: answering ``success`` is safe
    from then on, since the notice is durable and the applier, or the sweeper
    if Redis is down, will apply it. This is what lets the endpoint keep up
    with a gateway's burst on a flash-sale night: the paid transactions run
    behind it in batches.
    A notice that turns out not to match its order is applied as REJECTED
    (flagged, raised to the owner) like any other: the gateway retrying it
    would change nothing; so is a duplicate.
    """
    event_id = _event_insert(provider_id=provider_id, notice=notice)
    if event_id is None:  # stored before: acknowledged again, whatever came of it
        return CallbackOutcome(accepted=True, duplicate=True)
    try:
        payment_notices_wake()
    except RedisError:
        # No queue: apply this one here and now rather than wait for the sweeper.
        logger.error("%s notice %s: Redis is unreachable, applying it in the request", provider_id,
                     notice.external_id)
        payment_notices_apply(event_ids=[event_id])
    return CallbackOutcome(accepted=True)


def payment_notices_wake() -> None:
    """Make sure an applier job will run after this point. One Redis round
    trip while a wake-up is already pending, so a burst enqueues one job.

    Skipping is safe only while the pending job has not started (it clears
    the flag as it starts, then reads the inbox): two notifies at once both
    find it either pending (its job will see both notices) or not (one of
    them sets it). The flag cannot be checked for a live job in one round
    trip, so it is simply never trusted for long: it expires after
    APPLY_FLAG_TTL seconds, and a lost job (its worker SIGKILLed as it took
    it) stops swallowing wake-ups then, not after a minute. The flag also
    expires if this process dies between setting it and enqueueing."""
    job_id = f"payments-apply-{uuid.uuid4().hex}"
    if _apply_redis().set(APPLY_FLAG, job_id, nx=True, ex=APPLY_FLAG_TTL):
        django_rq.get_queue(APPLY_QUEUE, connection=_apply_redis()).enqueue(
            "payments.jobs.payment_notices_drain_job", job_id, job_id=job_id, job_timeout=APPLY_JOB_TIMEOUT
        )


def _wake_up_clear(*, job_id: str | None) -> None:
    """Clear the wake-up flag if ``job_id`` set it (or whatever it holds, for
    a drain no job woke). A job whose flag expired while it waited in the
    queue leaves its successor's flag alone: that one will still start and
    read the inbox after any notice that found it set, and clearing it would
    let the next notify enqueue yet another job while the successor waits."""
    if job_id is None:
        _apply_redis().delete(APPLY_FLAG)
    else:  # compared and deleted in one step: a notify may set a new flag in between
        _apply_redis().eval(_DELETE_IF_EQUAL, 1, APPLY_FLAG, job_id)


_DELETE_IF_EQUAL = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _apply_redis() -> redis.Redis:
    """The payments queue's Redis client, one per process and URL: django-rq
    builds a new client (and a new connection) per call, which cost the
    notify endpoint more than its own INSERT."""
    return _redis_client(django_rq.settings.QUEUES[APPLY_QUEUE]["URL"])


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def payment_notices_drain(*, budget_seconds: float | None = None, job_id: str | None = None) -> int:
    """The applier job: apply stored notices batch by batch until none is
    left (or the time budget is spent: then wake a successor). Several may
    run at once: each batch takes its notices with SKIP LOCKED. The budget is
    short so that a worker goes back to the queues between drains: the
    workers listen on ``delivery`` first, and the emails of the orders just
    paid must not wait for every stored notice to be applied.

    The wake-up flag is cleared before the first batch, so a notice stored
    after that point wakes a new job, and one stored before it is in a batch:
    a job stops as soon as a batch is not full (it has caught up), and frees
    its worker for the emails. Clearing it first is also why the flag needs
    no heartbeat while the job runs: a running job holds no flag, and a
    worker killed mid-batch leaves its notices to the job the next notify
    enqueues. ``job_id`` is the job's own id (see ``_wake_up_clear``).
    Returns the number of notices taken.
    """
    _wake_up_clear(job_id=job_id)
    if budget_seconds is None:
        budget_seconds = settings.PAYMENTS_APPLY_BUDGET_MS / 1000
    deadline = time.monotonic() + budget_seconds
    taken = 0
    while batch := payment_notices_apply():
        taken += batch
        if batch < settings.PAYMENTS_APPLY_BATCH:
            break  # caught up: whatever is stored from now on woke a successor (the flag was cleared)
        if time.monotonic() > deadline:
            payment_notices_wake()
            break
    return taken


def payment_notices_apply(*, event_ids: list[int] | None = None, received_before=None) -> int:
    """Apply one batch of stored notices (due ones, oldest first; or only
    ``event_ids``; or only those received before a moment) in ONE transaction:
    one commit for the batch. Each notice is applied in a savepoint, so one
    that fails rolls back alone; it stays RECEIVED and is retried after a
    growing delay, and the owner is told when it keeps failing. Returns how
    many notices were taken.

    Notices of a method that queries before credit are first confirmed with
    the provider, outside the transaction (``_notices_confirm``); one the
    provider cannot confirm yet waits, like a failed one, and is never paid
    blind or dropped."""
    now = timezone.now()
    events = PaymentEvent.objects.filter(outcome=PaymentEventOutcome.RECEIVED)
    if event_ids is not None:
        events = events.filter(pk__in=event_ids)
    else:
        events = events.filter(Q(apply_after__isnull=True) | Q(apply_after__lte=now))
    if received_before is not None:
        events = events.filter(received_at__lt=received_before)
    confirming = methods_confirming()
    verdicts = notices_confirm(events=events, methods=confirming) if confirming else {}
    # Every after-commit hook is robust: a Redis outage there is logged, and
    # the sweeper enqueues the deliveries it left PENDING.
    with transaction.atomic():
        batch = list(events.select_for_update(skip_locked=True).order_by("id")[: settings.PAYMENTS_APPLY_BATCH])
        outbox: list[int] = []  # the batch's email and SMS deliveries: one enqueue after commit
        notices = {event.pk: notice_from_event(event) for event in batch}
        ready = [event for event in batch
                 if not _confirmation_settle(event=event, methods=confirming, verdict=verdicts.get(event.pk))]
        together = notices_apply_together(events=ready, notices=notices, outbox=outbox)
        for event in ready:
            if event.pk in together:
                continue
            written: list[int] = []
            try:
                with transaction.atomic():
                    _callback_apply(event=event, notice=notices[event.pk], outbox=written)
            except Exception as exc:  # noqa: BLE001 - one bad notice must not stop the batch
                _apply_failed(event=event, exc=exc)
            else:
                outbox += written
        if outbox:
            transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=outbox), robust=True)
    return len(batch)


def _confirmation_settle(*, event: PaymentEvent, methods: set[str], verdict: str | None) -> bool:
    """Inside the batch: True when ``event`` must not be applied now. A
    notice the provider contradicts is rejected (its signature was valid, so
    the merchant key may have leaked: the owner is told); one it cannot
    confirm yet waits with back-off; one that arrived after the queries is
    left for the next batch."""
    if not notice_needs_confirmation(event, methods):
        return False
    if verdict == CONFIRMED:
        event.confirmed_at = timezone.now()
        return False
    if verdict is None:
        return True
    code, _, reason = verdict.partition(": ")
    if code == "QUERY_MISMATCH":
        with transaction.atomic():
            _event_reject(event, code)
            owner_alert_raise(
                kind=AlertKind.PAYMENT_ODD, dedupe_key=f"query-mismatch:{event.provider}:{event.external_id}",
                subject=f"A signed {event.provider} notice for {event.reference} does not match the provider's records",
                body=f"Notice {event.external_id} says {event.amount} {event.currency} was paid; {reason}. The order "
                     "was not paid. A correctly signed notice that the gateway contradicts means the merchant key "
                     "may have leaked: change it in the merchant panel and in the shop's payment method.",
            )
        return True
    _apply_failed(event=event, exc=NoticeUnconfirmed(f"{code}: {reason}"))
    return True


def payment_notices_apply_overdue(*, older_than_seconds: int) -> int:
    """The sweeper's part: apply notices stored longer ago than that (their
    wake-up was lost with Redis or a worker). Reads only the database.
    Returns how many were taken."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    taken = 0
    while batch := payment_notices_apply(received_before=cutoff):
        taken += batch
    return taken


def _apply_failed(*, event: PaymentEvent, exc: Exception) -> None:
    attempts = event.apply_attempts + 1
    logger.error("%s notice %s could not be applied (attempt %d): %s", event.provider, event.external_id,
                 attempts, type(exc).__name__, exc_info=None if isinstance(exc, NoticeUnconfirmed) else exc)
    delay = min(10 * 2 ** (attempts - 1), 3600)
    PaymentEvent.objects.filter(pk=event.pk).update(
        apply_attempts=attempts, apply_after=timezone.now() + timedelta(seconds=delay),
        apply_error=f"{type(exc).__name__}: {exc}"[:APPLY_ERROR_CHARS],
    )
    if attempts == settings.PAYMENTS_APPLY_ALERT_AFTER:
        owner_alert_raise(
            kind=AlertKind.PAYMENT_ODD, dedupe_key=f"notice-apply:{event.pk}",
            subject=f"A {event.provider} payment notice fails to apply ({type(exc).__name__})",
            body=f"Notice {event.external_id} for {event.reference or '?'} failed {attempts} times: "
                 f"{str(exc)[:300]}. It is kept and retried; its error is on the payment notice in admin.",
        )


def payment_callback_handle(*, provider_id: str, notice: CallbackNotice) -> CallbackOutcome:
    """Record a verified notice and apply it at once, exactly once; return
    what to answer. For notices that arrive one at a time (reconciliation,
    the admin); the notify endpoint stores and answers first
    (``payment_notice_receive``).

    A duplicate (same provider + external id) is answered as the first one was
    and changes nothing. A notice that does not match its payment is recorded
    as REJECTED, flagged on the order and raised to the owner, and changes
    nothing else. Returns only after commit.

    Redis being down does not undo a committed payment: the after-commit
    enqueue of the deliveries fails, the outbox rows are in the database, and
    the sweeper enqueues them once Redis is back.
    """
    outcome = None
    try:
        with transaction.atomic():
            event_id = _event_insert(provider_id=provider_id, notice=notice)
            if event_id is None:
                return _duplicate_outcome(provider_id=provider_id, notice=notice)
            event = PaymentEvent.objects.select_for_update().get(pk=event_id)
            outcome = _callback_apply(event=event, notice=notice)
    except RedisError:
        if outcome is None:  # raised inside the transaction: it rolled back
            raise
        # Committed; only an after-commit enqueue failed (and the hooks after it were skipped).
        logger.error("%s notice %s committed, but Redis is unreachable: the sweeper will enqueue its deliveries",
                     provider_id, notice.external_id)
    return outcome


def _event_insert(*, provider_id: str, notice: CallbackNotice) -> int | None:
    """Store the notice as RECEIVED under its idempotency key, in one
    statement; None if that key is already stored (a duplicate)."""
    table = PaymentEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (provider, external_id, reference, amount, currency, kind, succeeded,
                                 transaction_id, outcome, reason_code, payload, verification, received_at,
                                 apply_attempts, apply_error)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '', %s, %s, %s, 0, '')
            ON CONFLICT (provider, external_id) DO NOTHING
            RETURNING id
            """,
            [provider_id, notice.external_id, notice.reference, notice.amount, notice.currency, notice.kind,
             notice.succeeded, notice.transaction_id, PaymentEventOutcome.RECEIVED, Jsonb(notice.payload),
             notice.verification, timezone.now()],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _duplicate_outcome(*, provider_id: str, notice: CallbackNotice) -> CallbackOutcome:
    prior = PaymentEvent.objects.only("outcome", "reason_code").get(provider=provider_id,
                                                                     external_id=notice.external_id)
    return CallbackOutcome(accepted=prior.outcome != PaymentEventOutcome.REJECTED, code=prior.reason_code,
                           duplicate=True)


def notice_from_event(event: PaymentEvent) -> CallbackNotice:
    """The notice as the provider sent it, rebuilt from its stored row."""
    return CallbackNotice(
        external_id=event.external_id, reference=event.reference, amount=event.amount, currency=event.currency,
        succeeded=event.succeeded, payload=event.payload, kind=event.kind, transaction_id=event.transaction_id,
        verification=event.verification,
    )


def _callback_apply(*, event: PaymentEvent, notice: CallbackNotice,
                    outbox: list[int] | None = None) -> CallbackOutcome:
    """Apply a stored, locked RECEIVED notice: call inside a transaction.
    ``outbox``: see ``order_fulfil``."""
    payment = _payment_lock(provider_id=event.provider, notice=notice)
    if payment is None:
        return _event_reject(event, "ORDER_UNKNOWN")
    event.payment = payment
    provider_id = event.provider
    if notice.kind == NoticeKind.REFUND:
        return _refund_notice_apply(event=event, payment=payment, notice=notice)
    if notice.kind == NoticeKind.DISPUTE:
        return _dispute_notice_apply(event=event, payment=payment, notice=notice)
    if not notice.succeeded:
        # A declined or failed attempt: card testers leave many of these.
        risk_event_for_order(kind=RiskEventKind.PAYMENT_FAILED, order_id=payment.order_id)
        return _event_settle(event, PaymentEventOutcome.IGNORED)

    order = Order.objects.select_for_update().get(pk=payment.order_id)
    actor = f"provider:{provider_id}"
    facts = {"external_id": notice.payment_id, "amount": str(notice.amount), "currency": notice.currency}
    if payment.status != PaymentStatus.CREATED and payment.external_id == notice.payment_id:
        # The same transaction reported again under another notice id
        # (a second Stripe event, a reconciliation query): already applied.
        return _event_settle(event, PaymentEventOutcome.IGNORED, "ALREADY_APPLIED")
    if notice.currency != payment.currency:
        return _payment_refuse(event=event, order=order, code="CURRENCY_MISMATCH", actor=actor,
                               data={**facts, "expected": f"{payment.amount} {payment.currency}"})
    if notice.amount < payment.amount:
        return _payment_refuse(event=event, order=order, code="AMOUNT_MISMATCH", actor=actor,
                               data={**facts, "expected": f"{payment.amount} {payment.currency}"})

    if order.status == OrderStatus.REFUNDED:
        # Money for an order we no longer deliver: keep it on record, flag
        # it, tell the owner to give it back. Never drop it.
        return _payment_flag_extra(event=event, order=order, code="ORDER_REFUNDED", actor=actor, data=facts)
    if payment.status != PaymentStatus.CREATED or order.status not in (
        OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED
    ):
        # Paid a second time under another transaction id: keep the money
        # on record for a refund, deliver nothing more.
        order_event_record(order=order, type=OrderEventType.PAYMENT_EXTRA, actor=actor, data=facts)
        return _payment_flag_extra(event=event, order=order, code="ALREADY_PAID", actor=actor, data=facts,
                                   record=False)

    # The provider reported one transaction id for two payments: refused
    # here, without a savepoint (the unique constraint still guards a race:
    # the loser's savepoint in the applier rolls back and it is retried).
    reused = Payment.objects.filter(provider=provider_id, external_id=notice.payment_id).exclude(pk=payment.pk)
    updated = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.CREATED).exclude(Exists(reused)).update(
        status=PaymentStatus.SUCCEEDED, external_id=notice.payment_id, succeeded_at=timezone.now()
    )
    if updated != 1:  # the payment is locked and CREATED: only a reused transaction id leaves it unchanged
        return _payment_refuse(event=event, order=order, code="TRANSACTION_REUSED", actor=actor, data=facts)
    order_mark_paid(order=order, actor=actor, data={"external_id": notice.payment_id, "amount": str(notice.amount)})
    earlier = _refund_or_dispute_before(event=event, payment=payment, notice=notice)
    if earlier is not None:
        return _payment_after_refund_or_dispute(event=event, payment=payment, order=order, earlier=earlier,
                                                notice=notice, outbox=outbox)
    if notice.amount > payment.amount:
        order_event_record(order=order, type=OrderEventType.PAYMENT_ODD, actor=actor,
                           data={**facts, "reason": "OVERPAID", "expected": str(payment.amount)})
        owner_alert_raise(
            kind=AlertKind.PAYMENT_ODD, dedupe_key=f"payment-odd:{order.order_no}:OVERPAID",
            subject=f"Order {order.order_no} was overpaid: {notice.amount} for {payment.amount} {payment.currency}",
            body=f"{provider_id} trade {notice.payment_id} paid {notice.amount} {notice.currency}; the price was "
                 f"{payment.amount}. The order is delivered; refund the difference by hand if the buyer asks.",
        )
        event.reason_code = "OVERPAID"
        event.save(update_fields=["reason_code"])
    order_fulfil(order=order, outbox=outbox)
    return _event_settle(event, PaymentEventOutcome.ACCEPTED)


def _refund_or_dispute_before(*, event: PaymentEvent, payment: Payment,
                              notice: CallbackNotice) -> PaymentEvent | None:
    """A refund or dispute the provider reported before this payment's notice
    (providers deliver in any order): found by our reference, or by the
    provider's payment id for one that named only that (stored as ORDER_UNKNOWN)."""
    return PaymentEvent.objects.filter(
        Q(payment=payment) | Q(reference=payment.reference) | Q(transaction_id=notice.payment_id),
        provider=event.provider, kind__in=[NoticeKind.REFUND, NoticeKind.DISPUTE],
    ).exclude(pk=event.pk).order_by("id").first()


def _payment_after_refund_or_dispute(*, event: PaymentEvent, payment: Payment, order: Order, earlier: PaymentEvent,
                                     notice: CallbackNotice, outbox: list[int] | None) -> CallbackOutcome:
    """The money arrived, but the provider had already reported it refunded
    or disputed: no key goes out. A full refund closes the order as refunded
    (the buyer has the money back); a dispute or a partial refund holds it
    for staff, keys set aside but not shown. Call inside the paid transaction."""
    actor = f"provider:{event.provider}"
    full_refund = earlier.kind == NoticeKind.REFUND and earlier.succeeded and earlier.amount >= payment.amount
    code = "REFUNDED_BEFORE_PAYMENT" if earlier.kind == NoticeKind.REFUND else "DISPUTED_BEFORE_PAYMENT"
    order_event_record(order=order, type=OrderEventType.PAYMENT_ODD, actor=actor,
                       data={"reason": code, "external_id": earlier.external_id, "amount": str(earlier.amount)})
    if full_refund:
        order_refund_begin(order=order, actor=actor, reason="refunded at the provider before its payment arrived")
        refund = Refund.objects.create(
            payment=payment, amount=payment.amount, status=RefundStatus.SUCCEEDED,
            external_id=earlier.external_id[:80], actor=actor, reason="refunded at the provider",
            completed_at=timezone.now(),
        )
        Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REFUNDED)
        order_refund_complete(order=order, actor=actor, data={"refund": refund.pk, "amount": str(refund.amount)})
        body = "The order was closed as refunded; no key went out."
    else:
        order_fulfil(order=order, outbox=outbox, hold_reason=code)
        body = ("The order is held for review (Risk control → Review items): its keys are set aside, not shown. "
                "Approve only once the dispute or refund is settled.")
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"before-payment:{event.provider}:{event.external_id}",
        subject=f"Order {order.order_no}: its payment arrived after a {earlier.get_kind_display().lower()} ({code})",
        body=f"{event.provider} reported {earlier.get_kind_display().lower()} {earlier.external_id} "
             f"({earlier.amount} {earlier.currency}) before payment {notice.payment_id}. {body}",
    )
    return _event_settle(event, PaymentEventOutcome.ACCEPTED, code)


def _payment_lock(*, provider_id: str, notice: CallbackNotice) -> Payment | None:
    payments = Payment.objects.select_for_update().filter(provider=provider_id)
    if notice.reference:
        return payments.filter(reference=notice.reference).first()
    if notice.transaction_id:  # refund and dispute notices name the payment, not our reference
        return payments.filter(external_id=notice.transaction_id).first()
    return None


def _event_reject(event: PaymentEvent, code: str) -> CallbackOutcome:
    event.outcome = PaymentEventOutcome.REJECTED
    event.reason_code = code
    event.save(update_fields=["outcome", "reason_code", "payment"])
    logger.warning("%s notice %s rejected: %s", event.provider, event.external_id, code)
    return CallbackOutcome(accepted=False, code=code)


def _event_settle(event: PaymentEvent, outcome: str, code: str = "") -> CallbackOutcome:
    event.outcome = outcome
    event.reason_code = code or event.reason_code
    event.save(update_fields=["outcome", "reason_code", "payment"])
    return CallbackOutcome(accepted=True, code=event.reason_code)


def _payment_refuse(*, event: PaymentEvent, order: Order, code: str, actor: str, data: dict) -> CallbackOutcome:
    """An authentic payment that does not match its order: recorded, flagged, raised; nothing else."""
    order_event_record(order=order, type=OrderEventType.PAYMENT_REJECTED, actor=actor, data={**data, "code": code})
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"payment-rejected:{event.provider}:{event.external_id}",
        subject=f"Payment for order {order.order_no} rejected: {code}",
        body=f"{event.provider} reported {data.get('amount')} {data.get('currency')} (trade {data.get('external_id')}); "
             f"expected {data.get('expected', '?')}. The order was not paid. The buyer's money is at the provider: "
             "refund it there, or ask the buyer to pay the rest.",
    )
    return _event_reject(event, code)


def _payment_flag_extra(
    *, event: PaymentEvent, order: Order, code: str, actor: str, data: dict, record: bool = True
) -> CallbackOutcome:
    if record:
        order_event_record(order=order, type=OrderEventType.PAYMENT_ODD, actor=actor, data={**data, "reason": code})
    logger.warning("order %s: extra payment %s (%s)", order.order_no, data.get("external_id"), code)
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"payment-extra:{event.provider}:{event.external_id}",
        subject=f"Extra payment for order {order.order_no} ({code}): refund due",
        body=f"{event.provider} trade {data.get('external_id')} paid {data.get('amount')} {data.get('currency')} "
             f"for order {order.order_no}, which is {order.status}. Nothing more was delivered; "
             "refund this payment at the provider.",
    )
    return _event_settle(event, PaymentEventOutcome.EXTRA, code)


def _refund_notice_apply(*, event: PaymentEvent, payment: Payment, notice: CallbackNotice) -> CallbackOutcome:
    """The provider refunded the payment (e.g. from its dashboard)."""
    order = Order.objects.select_for_update().get(pk=payment.order_id)
    actor = f"provider:{event.provider}"
    full = notice.succeeded and notice.amount >= payment.amount
    if payment.status == PaymentStatus.REFUNDED or order.status == OrderStatus.REFUNDED:
        return _event_settle(event, PaymentEventOutcome.REFUNDED, "ALREADY_REFUNDED")  # our own refund, reported back
    if payment.status == PaymentStatus.SUCCEEDED and full and order.status in REFUNDABLE_STATUSES:
        order_refund_begin(order=order, actor=actor, reason="refunded at the provider")
        refund = Refund.objects.create(
            payment=payment, amount=payment.amount, status=RefundStatus.SUCCEEDED, external_id=notice.external_id[:80],
            actor=actor, reason="refunded at the provider", completed_at=timezone.now(),
        )
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(status=PaymentStatus.REFUNDED)
        order_refund_complete(order=order, actor=actor, data={"refund": refund.pk, "amount": str(refund.amount)})
        transaction.on_commit(lambda refund_id=refund.pk: refund_email_enqueue(refund_id=refund_id), robust=True)
        return _event_settle(event, PaymentEventOutcome.REFUNDED)
    # Refunded after the keys went out, or only in part, or before its
    # payment reached us (the payment, when it arrives, sees this notice and
    # delivers nothing): a person decides.
    if payment.status == PaymentStatus.CREATED:
        code = "REFUNDED_BEFORE_PAYMENT"
    else:
        code = "PARTIAL_REFUND" if not full else "REFUNDED_AFTER_DELIVERY"
    if full and payment.status == PaymentStatus.SUCCEEDED:
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SUCCEEDED).update(status=PaymentStatus.REFUNDED)
    order_event_record(order=order, type=OrderEventType.PAYMENT_ODD, actor=actor,
                       data={"reason": code, "amount": str(notice.amount), "external_id": notice.external_id})
    owner_alert_raise(
        kind=AlertKind.PAYMENT_ODD, dedupe_key=f"refund-odd:{event.provider}:{event.external_id}",
        subject=f"Order {order.order_no} refunded at {event.provider} while {order.status} ({code})",
        body=f"{notice.amount} {notice.currency} of payment {payment.reference} was refunded at the provider. "
             "The order's keys were not taken back: void them if the buyer should lose them.",
    )
    return _event_settle(event, PaymentEventOutcome.REFUNDED, code)


def _dispute_notice_apply(*, event: PaymentEvent, payment: Payment, notice: CallbackNotice) -> CallbackOutcome:
    order = Order.objects.select_for_update().get(pk=payment.order_id)
    reason = str(notice.payload.get("reason", ""))[:100]
    order_event_record(order=order, type=OrderEventType.DISPUTE_OPENED, actor=f"provider:{event.provider}",
                       data={"external_id": notice.external_id, "amount": str(notice.amount), "reason": reason})
    owner_alert_raise(
        kind=AlertKind.DISPUTE, dedupe_key=f"dispute:{event.provider}:{event.external_id}",
        subject=f"Payment for order {order.order_no} disputed ({reason or 'no reason given'})",
        body=f"{notice.amount} {notice.currency} of payment {payment.reference} is disputed at {event.provider}. "
             "The order's timeline and its payment notices in admin are the evidence to submit.",
    )
    risk_event_for_order(kind=RiskEventKind.DISPUTE, order_id=order.pk, amount=notice.amount)
    return _event_settle(event, PaymentEventOutcome.DISPUTED)


def refund_email_enqueue(*, refund_id: int) -> None:
    """Queue the buyer's refund email. A network call: after commit only."""
    django_rq.get_queue("default").enqueue(
        "payments.jobs.refund_email_send", refund_id, job_id=f"refund-email-{refund_id}",
        retry=Retry(max=5, interval=[10, 60, 300, 900, 3600]),
    )


def sandbox_payment_submit(*, reference: str, mode: str = NotifyMode.NORMAL) -> Payment:
    """The buyer pressed Pay on the sandbox page: the gateway books the trade
    and will notify the shop from the worker (server to server), re-sending
    until it answers ``success``. Paying twice sends the same trade again (a
    duplicate). ``mode`` makes the gateway misbehave (see NotifyMode)."""
    if mode not in NotifyMode.VALUES:
        mode = NotifyMode.NORMAL
    payment = Payment.objects.get(reference=reference, provider="sandbox")
    sandbox_trade_record(
        reference=reference, amount=sandbox_paid_amount(amount=payment.amount, mode=mode), currency=payment.currency
    )
    if mode == NotifyMode.LOST:
        return payment
    django_rq.get_queue("default").enqueue(
        "payments.jobs.sandbox_notify_send",
        reference,
        mode,
        job_id=f"sandbox-notify-{reference}",
        retry=Retry(max=len(SANDBOX_NOTIFY_RETRIES), interval=SANDBOX_NOTIFY_RETRIES),
    )
    return payment


