"""The notice inbox: the notify endpoint stores a verified notice and
answers; the applier takes stored notices in batches and hands each batch,
in one transaction, to the paid path (``paid_path.notices_apply``).

The signature is verified before the database is touched (by the provider,
in ``parse_callback``); the notice is stored under its unique (provider,
external id) key, so a duplicate changes nothing. A batch that fails is
applied notice by notice, each in its own savepoint: a notice that still
fails stays RECEIVED, is retried after a growing delay, and is raised to the
owner when it keeps failing. Nothing is dropped.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg.types.json import Jsonb
from redis.exceptions import RedisError

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from delivery.services import deliveries_enqueue
from payments.models import PaymentEvent, PaymentEventOutcome
from payments.providers.base import CallbackNotice
from payments.services.confirm import (
    CONFIRMED,
    NoticeUnconfirmed,
    methods_confirming,
    notice_needs_confirmation,
    notices_confirm,
)
from payments.services.notice_paths import CallbackOutcome, event_reject
from payments.services.paid_path import notices_apply
from shop.project.redis_breaker import redis_client_for

logger = logging.getLogger(__name__)

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
    """The payments queue's Redis client, one per process and connection
    config: django-rq builds a new client (and a new connection) per call,
    which cost the notify endpoint more than its own INSERT. It connects
    within REDIS_CONNECT_TIMEOUT, through the server's breaker: a Redis that
    drops packets costs the first notify one connect timeout, the ones after
    it nothing until the breaker tries again."""
    return redis_client_for(django_rq.settings.QUEUES[APPLY_QUEUE], socket_timeout=5)


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
    one commit for the batch, through the paid path (``notices_apply``).
    If the batch fails, each notice is applied alone in a savepoint, so one
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
        ready = [event for event in batch
                 if not _confirmation_settle(event=event, methods=confirming, verdict=verdicts.get(event.pk))]
        _notices_apply_isolated(events=ready, outbox=outbox)
        if outbox:
            transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=outbox), robust=True)
    return len(batch)


def _notices_apply_isolated(*, events: list[PaymentEvent], outbox: list[int]) -> None:
    """The batch in a savepoint; if it fails, each notice as a batch of one
    in its own savepoint, so one bad notice costs the batch its speed, never
    the other notices: the one that fails stays RECEIVED and is retried."""
    if not events:
        return
    written: list[int] = []
    try:
        with transaction.atomic():
            notices_apply(events=events, outbox=written)
    except Exception as exc:  # one bad notice must not stop the batch
        if len(events) == 1:
            _apply_failed(event=events[0], exc=exc)
            return
        logger.exception("a batch of %d notices could not be applied together; applying them one by one",
                         len(events))
        for event in PaymentEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("id"):
            _notices_apply_isolated(events=[event], outbox=outbox)
    else:
        outbox += written


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
            event_reject(event, code)
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
    outbox: list[int] = []
    try:
        with transaction.atomic():
            event_id = _event_insert(provider_id=provider_id, notice=notice)
            if event_id is None:
                return _duplicate_outcome(provider_id=provider_id, notice=notice)
            event = PaymentEvent.objects.select_for_update().get(pk=event_id)
            notices_apply(events=[event], outbox=outbox)
            outcome = CallbackOutcome(accepted=event.outcome != PaymentEventOutcome.REJECTED,
                                      code=event.reason_code)
            if outbox:
                transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=outbox), robust=True)
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
