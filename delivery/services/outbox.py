"""The outbox: delivery rows written in the paid transaction, their send jobs enqueued after commit, resends."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rq import Callback, Retry

from delivery.models import Channel, Delivery, DeliveryStatus

QUEUE = "delivery"


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
