"""The sweeper's part: which send jobs are still live, and re-enqueueing the deliveries whose job is lost."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from delivery.models import Channel, Delivery, DeliveryStatus
from delivery.services.outbox import QUEUE, delivery_enqueue
from delivery.services.sending import _lease_cutoff

logger = logging.getLogger(__name__)

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
        if scheduled is None:
            return True  # not asked (see deliveries_with_live_job)
        try:
            due = scheduled.get_scheduled_time(job)
        except NoSuchJobError:
            # Marked scheduled but in no registry (a Redis outage between
            # rq's writes): nothing will release it. rq raises here, and the
            # sweep must go on to the other deliveries, not stop on this one.
            return False
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
    requeued, failed = [], []
    for (delivery_id, batch_job_id), job in zip(candidates, jobs):
        if batch_job_id in live_batches:
            continue
        try:
            if _orphan_requeue(delivery_id=delivery_id, job=job, now=now, scheduled=scheduled):
                requeued.append(delivery_id)
        except RedisConnectionError:
            raise  # Redis is gone: the next delivery would fail the same way
        except Exception:
            # Something about this one delivery's job that was not foreseen:
            # the others (taken in id order, so behind it on every pass) must
            # not wait on it. Said after the others are done (the sweep step
            # fails, and the owner is alerted).
            logger.exception("delivery %s: its lost job could not be replaced", delivery_id)
            failed.append(delivery_id)
    if requeued:
        logger.warning("sweeper re-enqueued %d orphaned deliveries", len(requeued))
    if failed:
        raise OrphansNotReplaced(requeued=requeued, failed=failed)
    return requeued


class OrphansNotReplaced(Exception):
    """Some lost jobs could not be replaced (the others were)."""

    def __init__(self, *, requeued: list[int], failed: list[int]):
        super().__init__(f"re-enqueued {len(requeued)}; the lost jobs of deliveries "
                         f"{', '.join(map(str, failed[:20]))} could not be replaced (see the log)")
        self.requeued, self.failed = requeued, failed


def _orphan_requeue(*, delivery_id: int, job: Job | None, now: datetime, scheduled: ScheduledJobRegistry) -> bool:
    """Replace the delivery's job if it will not run; whether it was replaced."""
    try:
        if _job_live(job, now=now, scheduled=scheduled):
            return False
    except ValueError:
        # rq's own records of the job are broken (a Redis outage or a
        # SIGKILL between its writes): the job will not run; replace it.
        logger.warning("delivery %s: unreadable job state, replacing the job", delivery_id)
    if job is not None:
        _job_discard(job)
    delivery_enqueue(delivery_id=delivery_id)
    return True


def _job_discard(job: Job) -> None:
    """Remove a dead run's leftovers from every registry; if rq cannot (its
    records are inconsistent), drop the job's hash so a fresh one can replace it."""
    try:
        job.delete()
    except ValueError:
        job.connection.delete(job.key)
