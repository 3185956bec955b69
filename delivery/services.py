"""The delivery outbox: rows written in the paid transaction, sent by the worker."""

from __future__ import annotations

import logging
from functools import partial

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rq import Callback, Retry

from delivery.channels import channel_get
from delivery.models import Channel, Delivery, DeliveryStatus

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
            transaction.on_commit(partial(delivery_enqueue, delivery_id=delivery.pk))
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
        retry=Retry(max=len(schedule), interval=schedule),
        on_failure=Callback("delivery.jobs.delivery_send_failed"),
    )


class DeliveryNotPending(Exception):
    code = "DELIVERY_NOT_PENDING"


def delivery_send(*, delivery_id: int) -> Delivery:
    """Send one pending delivery through its channel.

    Runs outside any transaction: the channel is a network call. A SENT or
    FAILED delivery is returned untouched (never sent twice). The attempt is
    counted before the send, the result recorded after it in a short
    conditional update. A failed send records the error and re-raises, so the
    queue retries on its schedule.
    """
    delivery = Delivery.objects.select_related("order").get(pk=delivery_id)
    if delivery.status != DeliveryStatus.PENDING:
        return delivery
    Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
        attempts=F("attempts") + 1, last_attempt_at=timezone.now()
    )
    try:
        message_id = channel_get(delivery.channel).send(delivery=delivery)
    except Exception as exc:
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
            last_error=f"{type(exc).__name__}: {exc}"[:1000]
        )
        logger.warning("delivery %s (%s) attempt failed: %s", delivery_id, delivery.channel, type(exc).__name__)
        raise
    Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.SENT, sent_at=timezone.now(), provider_message_id=message_id[:200], last_error=""
    )
    delivery.refresh_from_db()
    return delivery


def delivery_attempts_exhausted(*, delivery_id: int) -> bool:
    delivery = Delivery.objects.only("attempts", "status").get(pk=delivery_id)
    return delivery.status == DeliveryStatus.PENDING and delivery.attempts > len(settings.DELIVERY_RETRY_SCHEDULE)


def delivery_mark_failed(*, delivery_id: int) -> bool:
    """PENDING → FAILED (the dead letter; still re-deliverable). Call inside a transaction."""
    return bool(
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(status=DeliveryStatus.FAILED)
    )


def deliveries_all_sent(*, order_id: int) -> bool:
    return not Delivery.objects.filter(order_id=order_id).exclude(status=DeliveryStatus.SENT).exists()
