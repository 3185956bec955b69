"""The delivery outbox: rows written in the paid transaction, sent by the worker.

Sends go out in batches: one job per up to ``DELIVERY_BATCH_SIZE`` deliveries
(``deliveries_enqueue``), claimed with one statement, sent over one
connection, recorded in one transaction. A delivery that fails in a batch is
retried on its own job (``delivery_enqueue``), as are resends, ``redeliver``
and the sweeper's rescues.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from delivery.alerts import owner_alert_raise
from delivery.channels import channel_get
from delivery.channels.base import PermanentDeliveryError
from delivery.models import (
    AlertKind,
    AttemptOutcome,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    SweepRun,
)
from inventory.selectors import keys_for_orders

logger = logging.getLogger(__name__)

QUEUE = "delivery"
# A batch stops starting sends after this long (the rest are retried one by
# one): well inside the job timeout (60 s) and the send lease (90 s), so a
# slow mail server cannot make a live batch look dead or time it out mid-send.
BATCH_SEND_SECONDS = 30


def deliveries_create(*, order, channels: list[tuple[str, str]], enqueue: bool = True) -> list[Delivery]:
    """Write one Delivery per (channel, recipient); with ``enqueue``, enqueue
    their send after commit.

    Call inside the paid transaction. The inbox delivery is SENT at once: the
    keys are on the order page from this commit on. Others start PENDING (the
    outbox) and are enqueued only once the transaction has committed, so a
    worker never looks for a row that does not exist yet. A caller writing
    many orders at once uses ``deliveries_create_many`` and enqueues all
    their deliveries in one ``deliveries_enqueue`` after commit.
    """
    created = deliveries_create_many(orders=[(order, channels)])
    pending = [d.pk for d in created if d.status == DeliveryStatus.PENDING]
    if enqueue and pending:
        transaction.on_commit(lambda: deliveries_enqueue(delivery_ids=pending), robust=True)
    return created


def deliveries_create_many(*, orders: list[tuple[object, list[tuple[str, str]]]]) -> list[Delivery]:
    """The deliveries of many orders, [(order, [(channel, recipient)])], in
    one insert; nothing is enqueued. Call inside the paid transaction."""
    now = timezone.now()
    return Delivery.objects.bulk_create(
        Delivery(order=order, channel=channel, status=DeliveryStatus.SENT, attempts=1, last_attempt_at=now,
                 sent_at=now)
        if channel == Channel.INBOX else Delivery(order=order, channel=channel, recipient=recipient)
        for order, channels in orders for channel, recipient in channels
    )


def deliveries_batch_job_id(*, delivery_ids: list[int]) -> str:
    """Deterministic: enqueueing the same batch again replaces its job. The
    digest keeps two different batches that start at the same id apart."""
    digest = hashlib.sha1(",".join(map(str, delivery_ids)).encode()).hexdigest()[:10]
    return f"deliveries-{delivery_ids[0]}-{len(delivery_ids)}-{digest}"


def deliveries_enqueue(*, delivery_ids: list[int]) -> list[str]:
    """Put the batch send jobs on the queue: one per ``DELIVERY_BATCH_SIZE``
    ids. Returns their job ids.

    A network call and a write: never call it inside a transaction (enqueue
    it with ``transaction.on_commit``). Each delivery is told its batch job
    before the job is enqueued: if Redis is down, the job it names does not
    exist and the sweeper re-enqueues the delivery on its own job.
    """
    ids = sorted(set(delivery_ids))
    size = settings.DELIVERY_BATCH_SIZE
    queue = django_rq.get_queue(QUEUE)
    job_ids = []
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        job_id = deliveries_batch_job_id(delivery_ids=chunk)
        Delivery.objects.filter(pk__in=chunk, status=DeliveryStatus.PENDING).update(batch_job_id=job_id)
        queue.enqueue("delivery.jobs.deliveries_send_job", chunk, job_id=job_id)
        job_ids.append(job_id)
    return job_ids


def delivery_enqueue(*, delivery_id: int):
    """Put one delivery's send job on the queue under its deterministic id,
    with the whole retry schedule (resends, ``redeliver``, the sweeper). A
    network call: never call it inside a transaction."""
    return _delivery_job_enqueue(delivery_id=delivery_id, schedule=list(settings.DELIVERY_RETRY_SCHEDULE))


def delivery_retry_enqueue(*, delivery_id: int):
    """A delivery whose attempt in a batch failed: its own job, due after the
    first interval of the retry schedule and retried on the rest, so the
    attempts, the budget and the dead-letter moment are those of a delivery
    that was sent on its own job from the start. Only while the schedule has
    attempts left (``delivery_attempts_exhausted`` is False). A network call."""
    first, *rest = settings.DELIVERY_RETRY_SCHEDULE
    return _delivery_job_enqueue(delivery_id=delivery_id, schedule=rest, delay=first)


def _delivery_job_enqueue(*, delivery_id: int, schedule: list[int], delay: int | None = None):
    options = {
        "job_id": f"delivery-{delivery_id}",
        "retry": Retry(max=len(schedule), interval=schedule) if schedule else None,  # empty: one attempt only
        "on_failure": Callback("delivery.jobs.delivery_send_failed"),
    }
    queue = django_rq.get_queue(QUEUE)
    if delay is None:
        return queue.enqueue("delivery.jobs.delivery_send_job", delivery_id, **options)
    return queue.enqueue_in(timedelta(seconds=delay), "delivery.jobs.delivery_send_job", delivery_id, **options)


ERROR_CHARS = 1000


def _error_text(exc: BaseException) -> str:
    # Channels raise errors about the transport (SMTP replies, HTTP statuses),
    # never with the message body: no key material ends up here.
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def _lease_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.DELIVERY_SEND_LEASE_SECONDS)


@dataclass
class Send:
    """One claimed delivery in a batch: its open attempt, then what the channel said."""

    delivery: Delivery
    attempt_id: int
    result: str | Exception | None = None

    @property
    def sent(self) -> bool:
        return isinstance(self.result, str)

    @property
    def error(self) -> str:
        return "" if self.sent else _error_text(self.result)


@dataclass
class SendsRecorded:
    """What ``deliveries_record`` wrote: the deliveries that became SENT now
    (a duplicate run finds them SENT already and is not listed), and those to
    retry or dead-letter."""

    sent: list[Delivery] = field(default_factory=list)
    retry: list[Send] = field(default_factory=list)
    rejected: list[Send] = field(default_factory=list)


def deliveries_claim(*, delivery_ids: list[int]) -> list[Send]:
    """Take the send lease of every delivery that can be sent now and open
    an attempt for each, in one short transaction.

    One conditional UPDATE: only a PENDING delivery whose lease is free or
    has lapsed is claimed, so two runs (a duplicate batch job, a retry job,
    the sweeper's job) cannot both send it; a SENT one is never claimed.
    """
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE {Delivery._meta.db_table}
                    SET attempts = attempts + 1, last_attempt_at = %s, sending_started_at = %s
                    WHERE id = ANY(%s) AND status = %s AND (sending_started_at IS NULL OR sending_started_at < %s)
                    RETURNING id, attempts, resends""",
                [now, now, list(delivery_ids), DeliveryStatus.PENDING, _lease_cutoff(now)],
            )
            claimed = cursor.fetchall()
        if not claimed:
            return []
        attempts = DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(delivery_id=pk, number=number, resend=resends, started_at=now)
            for pk, number, resends in claimed
        )
    deliveries = Delivery.objects.select_related("order").in_bulk([pk for pk, _, _ in claimed])
    return [Send(delivery=deliveries[a.delivery_id], attempt_id=a.pk) for a in attempts]


def deliveries_transmit(*, sends: list[Send]) -> float:
    """Send every claimed delivery through its channel (a network call:
    outside any transaction and row lock). Each ``Send`` gets its result.
    The keys of the whole batch are read in one query. Returns the seconds
    the sending took."""
    started = time.monotonic()
    keys = keys_for_orders(order_ids={s.delivery.order_id for s in sends})
    by_channel: dict[str, list[Send]] = defaultdict(list)
    for send in sends:
        by_channel[send.delivery.channel].append(send)
    deadline = started + BATCH_SEND_SECONDS
    for channel, group in by_channel.items():
        try:
            results = channel_get(channel).send_many(
                deliveries=[s.delivery for s in group], keys_by_order=keys, deadline=deadline
            )
        except Exception as exc:  # noqa: BLE001 - the channel itself is broken (its setup): retried, alerted
            results = [exc] * len(group)
        for send, result in zip(group, results, strict=True):
            send.result = result if isinstance(result, Exception) else (result or "")
    return time.monotonic() - started


def deliveries_record(*, sends: list[Send], seconds: float) -> SendsRecorded:
    """Record the outcome of every send of a batch: close the attempts, mark
    the sent deliveries SENT and free the lease of the failed ones. A
    constant number of statements for the sent ones.

    Call inside a transaction (the caller settles the orders in the same
    one). A delivery rejected for good keeps its lease until the caller
    dead-letters it, so no run sends it in between.
    """
    now = timezone.now()
    recorded = SendsRecorded()
    outcomes = []
    for send in sends:
        if send.sent:
            outcomes.append((send.attempt_id, AttemptOutcome.SENT, "", send.result[:200]))
        elif isinstance(send.result, PermanentDeliveryError):
            outcomes.append((send.attempt_id, AttemptOutcome.REJECTED, send.error, ""))
            recorded.rejected.append(send)
        else:
            outcomes.append((send.attempt_id, AttemptOutcome.RETRY, send.error, ""))
            recorded.retry.append(send)
    ids, kinds, errors, message_ids = (list(column) for column in zip(*outcomes, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {DeliveryAttempt._meta.db_table} AS a
                SET outcome = v.outcome, error = v.error, provider_message_id = v.message_id,
                    finished_at = %s, duration_ms = %s
                FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS v(id, outcome, error, message_id)
                WHERE a.id = v.id""",
            [now, int(seconds * 1000), ids, kinds, errors, message_ids],
        )
        sent = [s for s in sends if s.sent]
        if sent:
            cursor.execute(
                f"""UPDATE {Delivery._meta.db_table} AS d
                    SET status = %s, sent_at = %s, provider_message_id = v.message_id, last_error = '',
                        sending_started_at = NULL
                    FROM unnest(%s::bigint[], %s::text[]) AS v(id, message_id)
                    WHERE d.id = v.id AND d.status = %s
                    RETURNING d.id""",
                [DeliveryStatus.SENT, now, [s.delivery.pk for s in sent], [s.result[:200] for s in sent],
                 DeliveryStatus.PENDING],
            )
            newly_sent = {pk for (pk,) in cursor.fetchall()}
            recorded.sent = [s.delivery for s in sent if s.delivery.pk in newly_sent]
    for send in recorded.retry:
        Delivery.objects.filter(
            pk=send.delivery.pk, status=DeliveryStatus.PENDING, sending_started_at=send.delivery.sending_started_at
        ).update(last_error=send.error, sending_started_at=None)
        logger.warning("delivery %s (%s) attempt failed: %s", send.delivery.pk, send.delivery.channel,
                       type(send.result).__name__)
    for send in recorded.rejected:
        Delivery.objects.filter(pk=send.delivery.pk, status=DeliveryStatus.PENDING).update(last_error=send.error)
        logger.warning("delivery %s (%s) rejected for good: %s", send.delivery.pk, send.delivery.channel,
                       type(send.result).__name__)
    return recorded


def delivery_attempts_exhausted(*, delivery_id: int) -> bool:
    delivery = Delivery.objects.only("attempts", "status").get(pk=delivery_id)
    return delivery.status == DeliveryStatus.PENDING and delivery.attempts > len(settings.DELIVERY_RETRY_SCHEDULE)


def delivery_mark_failed(*, delivery_id: int, reason: str = "") -> bool:
    """PENDING → FAILED (the dead letter; still re-deliverable) and tell the owner.

    Call inside a transaction. One alert per channel within the alert window
    (a mail outage dead-letters many deliveries: the owner gets one message
    counting them, not one each). Returns False when it was not PENDING.
    """
    fields = {"status": DeliveryStatus.FAILED, "sending_started_at": None}
    if reason:
        fields["last_error"] = reason[:ERROR_CHARS]
    if not Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(**fields):
        return False
    delivery = Delivery.objects.select_related("order").get(pk=delivery_id)
    owner_alert_raise(
        kind=AlertKind.DEAD_LETTER,
        dedupe_key=f"dead-letter:{delivery.channel}",
        subject=f"{delivery.get_channel_display()} delivery failed for good (order {delivery.order.order_no})",
        body=(
            f"Order {delivery.order.order_no}, {delivery.get_channel_display()}, after {delivery.attempts} "
            f"attempt(s): {delivery.last_error}\n\nEvery failed delivery: "
            f"{settings.SITE_URL}/admin/delivery/delivery/?status__exact={DeliveryStatus.FAILED}\n"
            f"Send them again with `manage.py redeliver --failed-only` once the cause is fixed."
        ),
    )
    return True


def delivery_resend(*, delivery_id: int, enqueue: bool = True) -> bool:
    """Ask for a delivery again (buyer, staff, ``redeliver``): the same keys.

    Call inside a transaction. A SENT or FAILED delivery goes back to PENDING
    as a new send (a new idempotency key, a fresh retry budget); a PENDING one
    is only kicked (its job re-enqueued now). The job is enqueued after
    commit, unless ``enqueue`` is False (the caller sends it itself). The
    inbox has nothing to send. Returns whether a send will happen.
    """
    delivery = Delivery.objects.filter(pk=delivery_id).exclude(channel=Channel.INBOX).first()
    if delivery is None:
        return False
    if delivery.status != DeliveryStatus.PENDING:
        updated = Delivery.objects.filter(
            pk=delivery_id, status__in=[DeliveryStatus.SENT, DeliveryStatus.FAILED]
        ).update(
            status=DeliveryStatus.PENDING, resends=F("resends") + 1, attempts=0, last_error="", sent_at=None,
            sending_started_at=None,
        )
        if not updated:
            return False
    if enqueue:
        transaction.on_commit(lambda delivery_id=delivery_id: delivery_enqueue(delivery_id=delivery_id), robust=True)
    return True


# --- the sweeper's part -------------------------------------------------------

SWEEP_BATCH = 500


def _job_live(job: Job | None, *, now: datetime, scheduled: ScheduledJobRegistry | None = None) -> bool:
    """Will this job still run the send? A STARTED job older than the send
    lease is dead: the job timeout is shorter than the lease, so a live one
    would have ended (its worker was SIGKILLed or lost). A retry SCHEDULED for
    a time long past is dead too: no scheduler is left to release it (the
    worker holding the scheduler lock died). So is a QUEUED job that is no
    longer in its queue: a worker took it (rq moves it to an intermediate
    list first) and was SIGKILLed before it started it; rq itself fails such
    a job only at its next maintenance, minutes later."""
    if job is None:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.DEFERRED:
        return True
    if status == JobStatus.QUEUED:
        return Queue(name=job.origin, connection=job.connection).get_job_position(job.id) is not None
    if status == JobStatus.SCHEDULED:
        due = scheduled.get_scheduled_time(job) if scheduled is not None else None
        if due is None:
            return scheduled is None  # not asked (see deliveries_with_live_job) or no longer in the registry
        if due.tzinfo is None:
            due = due.replace(tzinfo=UTC)
        return due >= now - timedelta(seconds=settings.SWEEP_ORPHAN_AFTER_SECONDS)
    if status == JobStatus.STARTED:
        started_at = job.started_at
        if started_at is not None and started_at.tzinfo is None:
            started_at = started_at.replace(tzinfo=UTC)
        return started_at is None or started_at >= _lease_cutoff(now)
    return False


def _batch_jobs_live(*, batch_job_ids: set[str], redis, now: datetime) -> set[str]:
    """The batch jobs among ``batch_job_ids`` that will still run. A batch
    job whose records rq cannot read counts as dead (its deliveries are
    re-enqueued on their own jobs; the batch job is left to rq)."""
    ids = sorted(batch_job_ids)
    live = set()
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=redis)):
        try:
            if _job_live(job, now=now):
                live.add(job_id)
        except ValueError:
            logger.warning("batch job %s: unreadable job state", job_id)
    return live


def deliveries_with_live_job(*, delivery_ids: list[int]) -> set[int]:
    """The deliveries among ``delivery_ids`` whose send job (their own, or
    the batch job they were enqueued in) will still run. Asks Redis (a
    network call): never inside a transaction."""
    if not delivery_ids:
        return set()
    redis = django_rq.get_connection(QUEUE)
    batches = dict(Delivery.objects.filter(pk__in=delivery_ids).values_list("pk", "batch_job_id"))
    now = timezone.now()
    live_batches = _batch_jobs_live(batch_job_ids={b for b in batches.values() if b}, redis=redis, now=now)
    jobs = Job.fetch_many([f"delivery-{pk}" for pk in delivery_ids], connection=redis)
    return {
        pk for pk, job in zip(delivery_ids, jobs)
        if batches.get(pk) in live_batches or _job_live(job, now=now)
    }


def deliveries_requeue_orphans(*, older_than_seconds: int) -> list[int]:
    """Re-enqueue PENDING deliveries older than ``older_than_seconds`` whose
    job is gone or dead (Redis lost its data, a worker was SIGKILLed, rq gave
    up) on their own job. A delivery counts as having a live job when its own
    job or its batch job will still run: a batch waiting in a long queue is
    not an orphan.

    Reads the DB, not Redis, to find the work; asks Redis only whether each
    job is still alive. A network call: never call it inside a transaction.
    Safe to repeat: the job id is deterministic and the send is leased.
    """
    now = timezone.now()
    candidates = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, created_at__lt=now - timedelta(seconds=older_than_seconds))
        .exclude(channel=Channel.INBOX)
        .filter(Q(sending_started_at__isnull=True) | Q(sending_started_at__lt=_lease_cutoff(now)))
        .order_by("id")
        .values_list("pk", "batch_job_id")[:SWEEP_BATCH]
    )
    if not candidates:
        return []
    queue = django_rq.get_queue(QUEUE)
    live_batches = _batch_jobs_live(
        batch_job_ids={b for _, b in candidates if b}, redis=queue.connection, now=now
    )
    jobs = Job.fetch_many([f"delivery-{pk}" for pk, _ in candidates], connection=queue.connection)
    scheduled = ScheduledJobRegistry(queue=queue)
    requeued = []
    for (delivery_id, batch_job_id), job in zip(candidates, jobs):
        if batch_job_id in live_batches:
            continue
        try:
            if _job_live(job, now=now, scheduled=scheduled):
                continue
        except ValueError:
            # rq's own records of the job are broken (a Redis outage or a
            # SIGKILL between its writes): the job will not run; replace it.
            logger.warning("delivery %s: unreadable job state, replacing the job", delivery_id)
        if job is not None:
            _job_discard(job)
        delivery_enqueue(delivery_id=delivery_id)
        requeued.append(delivery_id)
    if requeued:
        logger.warning("sweeper re-enqueued %d orphaned deliveries", len(requeued))
    return requeued


def _job_discard(job: Job) -> None:
    """Remove a dead run's leftovers from every registry; if rq cannot (its
    records are inconsistent), drop the job's hash so a fresh one can replace it."""
    try:
        job.delete()
    except ValueError:
        job.connection.delete(job.key)


def sweep_run_record(*, name: str, started_at: datetime, result: dict) -> SweepRun:
    run, _ = SweepRun.objects.update_or_create(
        name=name, defaults={"started_at": started_at, "finished_at": timezone.now(), "result": result}
    )
    return run
