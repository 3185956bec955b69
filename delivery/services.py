"""The delivery outbox: rows written in the paid transaction, sent by the worker."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from rq import Callback, Retry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from delivery.alerts import owner_alert_raise
from delivery.channels import channel_get
from delivery.channels.base import PermanentDeliveryError
from delivery.models import (
    AlertKind, AttemptOutcome, Channel, Delivery, DeliveryAttempt, DeliveryStatus, SweepRun,
)

logger = logging.getLogger(__name__)

QUEUE = "delivery"


def deliveries_create(*, order, channels: list[tuple[str, str]]) -> list[Delivery]:
    """Write one Delivery per (channel, recipient) and enqueue the sends after commit.

    Call inside the paid transaction. The inbox delivery is SENT at once: the
    keys are on the order page from this commit on. Others start PENDING (the
    outbox) and are enqueued only once the transaction has committed, so a
    worker never looks for a row that does not exist yet.
    """
    now = timezone.now()
    created = []
    for channel, recipient in channels:
        if channel == Channel.INBOX:
            delivery = Delivery.objects.create(
                order=order, channel=channel, status=DeliveryStatus.SENT, attempts=1,
                last_attempt_at=now, sent_at=now,
            )
        else:
            delivery = Delivery.objects.create(order=order, channel=channel, recipient=recipient)
            transaction.on_commit(lambda delivery_id=delivery.pk: delivery_enqueue(delivery_id=delivery_id), robust=True)
        created.append(delivery)
    return created


def delivery_enqueue(*, delivery_id: int):
    """Put the send job on the queue under its deterministic id. A network call:
    never call it inside a transaction (use ``deliveries_create``'s on_commit)."""
    schedule = settings.DELIVERY_RETRY_SCHEDULE
    return django_rq.get_queue(QUEUE).enqueue(
        "delivery.jobs.delivery_send_job",
        delivery_id,
        job_id=f"delivery-{delivery_id}",
        retry=Retry(max=len(schedule), interval=schedule) if schedule else None,  # empty: one attempt only
        on_failure=Callback("delivery.jobs.delivery_send_failed"),
    )


class DeliveryRejected(Exception):
    """The channel refused this delivery for good (e.g. the address does not
    exist): no retry. The caller dead-letters it with ``reason``."""

    code = "DELIVERY_REJECTED"

    def __init__(self, *, delivery_id: int, reason: str):
        super().__init__(f"delivery {delivery_id} rejected: {reason}")
        self.delivery_id = delivery_id
        self.reason = reason


ERROR_CHARS = 1000


def _error_text(exc: BaseException) -> str:
    # Channels raise errors about the transport (SMTP replies, HTTP statuses),
    # never with the message body: no key material ends up here.
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def _lease_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.DELIVERY_SEND_LEASE_SECONDS)


def _attempt_claim(*, delivery_id: int) -> DeliveryAttempt | None:
    """Take the send lease and open an attempt, in one short transaction.

    A conditional UPDATE: only a PENDING delivery whose lease is free or has
    lapsed can be claimed, so two runs of the same job cannot both send.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .filter(Q(sending_started_at__isnull=True) | Q(sending_started_at__lt=_lease_cutoff(now)))
            .update(attempts=F("attempts") + 1, last_attempt_at=now, sending_started_at=now)
        )
        if not claimed:
            return None
        attempts, resends = Delivery.objects.values_list("attempts", "resends").get(pk=delivery_id)
        return DeliveryAttempt.objects.create(
            delivery_id=delivery_id, number=attempts, resend=resends, started_at=now
        )


def _attempt_close(*, attempt: DeliveryAttempt, outcome: str, started: float, error: str = "",
                   message_id: str = "") -> None:
    """Record how the attempt ended. Call inside a transaction."""
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        outcome=outcome, error=error, provider_message_id=message_id[:200], finished_at=timezone.now(),
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def delivery_send(*, delivery_id: int) -> Delivery:
    """Send one pending delivery through its channel.

    Runs outside any transaction: the channel is a network call. A SENT or
    FAILED delivery is returned untouched (never sent twice); so is one whose
    send lease another run holds. Every attempt is recorded: opened (with the
    lease) before the send, closed after it in a short transaction. A
    transient failure records the error and re-raises, so the queue retries on
    its schedule; a permanent one raises ``DeliveryRejected``.
    """
    delivery = Delivery.objects.select_related("order").get(pk=delivery_id)
    if delivery.status != DeliveryStatus.PENDING:
        return delivery
    attempt = _attempt_claim(delivery_id=delivery_id)
    if attempt is None:
        delivery.refresh_from_db()
        return delivery
    delivery.attempts, delivery.resends = attempt.number, attempt.resend
    started = time.monotonic()
    try:
        message_id = channel_get(delivery.channel).send(delivery=delivery)
    except PermanentDeliveryError as exc:
        reason = _error_text(exc)
        with transaction.atomic():
            _attempt_close(attempt=attempt, outcome=AttemptOutcome.REJECTED, started=started, error=reason)
            # The lease stays until the caller dead-letters it: no run sends in between.
            Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(last_error=reason)
        logger.warning("delivery %s (%s) rejected for good: %s", delivery_id, delivery.channel, type(exc).__name__)
        raise DeliveryRejected(delivery_id=delivery_id, reason=reason) from exc
    except Exception as exc:
        error = _error_text(exc)
        with transaction.atomic():
            _attempt_close(attempt=attempt, outcome=AttemptOutcome.RETRY, started=started, error=error)
            Delivery.objects.filter(
                pk=delivery_id, status=DeliveryStatus.PENDING, sending_started_at=attempt.started_at
            ).update(last_error=error, sending_started_at=None)
        logger.warning("delivery %s (%s) attempt failed: %s", delivery_id, delivery.channel, type(exc).__name__)
        raise
    message_id = message_id or ""
    with transaction.atomic():
        _attempt_close(attempt=attempt, outcome=AttemptOutcome.SENT, started=started, message_id=message_id)
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), provider_message_id=message_id[:200],
            last_error="", sending_started_at=None,
        )
    delivery.refresh_from_db()
    return delivery


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


def deliveries_all_sent(*, order_id: int) -> bool:
    return not Delivery.objects.filter(order_id=order_id).exclude(status=DeliveryStatus.SENT).exists()


# --- the sweeper's part -------------------------------------------------------

_LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.DEFERRED}
SWEEP_BATCH = 500


def _job_live(job: Job | None, *, now: datetime, scheduled: ScheduledJobRegistry | None = None) -> bool:
    """Will this job still run the send? A STARTED job older than the send
    lease is dead: the job timeout is shorter than the lease, so a live one
    would have ended (its worker was SIGKILLed or lost). A retry SCHEDULED for
    a time long past is dead too: no scheduler is left to release it (the
    worker holding the scheduler lock died)."""
    if job is None:
        return False
    status = job.get_status(refresh=False)
    if status in _LIVE_STATUSES:
        return True
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


def deliveries_with_live_job(*, delivery_ids: list[int]) -> set[int]:
    """The deliveries among ``delivery_ids`` whose send job will still run.
    Asks Redis (a network call): never inside a transaction."""
    if not delivery_ids:
        return set()
    jobs = Job.fetch_many([f"delivery-{pk}" for pk in delivery_ids], connection=django_rq.get_connection(QUEUE))
    now = timezone.now()
    return {pk for pk, job in zip(delivery_ids, jobs) if _job_live(job, now=now)}


def deliveries_requeue_orphans(*, older_than_seconds: int) -> list[int]:
    """Re-enqueue PENDING deliveries older than ``older_than_seconds`` whose job
    is gone or dead (Redis lost its data, a worker was SIGKILLed, rq gave up).

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
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if not candidates:
        return []
    queue = django_rq.get_queue(QUEUE)
    jobs = Job.fetch_many([f"delivery-{pk}" for pk in candidates], connection=queue.connection)
    scheduled = ScheduledJobRegistry(queue=queue)
    requeued = []
    for delivery_id, job in zip(candidates, jobs):
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
