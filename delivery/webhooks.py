"""Outbound merchant webhooks: ``order.paid``, ``order.delivered``,
``order.refunded``, ``product.low_stock``.

``webhook_emit`` writes one ``WebhookDelivery`` per active endpoint that wants
the event (inside the caller's transaction: a rolled-back step emits nothing)
and enqueues the send after commit. The RQ job POSTs the JSON body with

    X-Kamidrop-Event: order.paid
    X-Kamidrop-Delivery: <delivery id>          (the same on every retry)
    X-Kamidrop-Timestamp: <unix seconds>
    X-Kamidrop-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the endpoint's secret>

and retries non-2xx answers on ``WEBHOOK_RETRY_SCHEDULE``; when that runs out
the delivery is FAILED (the admin can send it again). Payloads never carry
key material.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rq import Retry

from delivery.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from delivery.sms.webhook import webhook_sign

logger = logging.getLogger(__name__)

QUEUE = "default"
TIMEOUT_SECONDS = 10


def webhook_emit(*, event: str, data: dict | Callable[[], dict]) -> list[int]:
    """Record ``event`` for every endpoint that wants it; sent after commit.
    May be called inside a transaction. ``data`` may be a function, called
    only when some endpoint wants the event (the hot path usually has none).
    Returns the WebhookDelivery ids."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(active=True).order_by("id") if e.wants(event)]
    if not endpoints:
        return []
    if callable(data):
        data = data()
    ids = []
    for endpoint in endpoints:
        payload = {"id": str(uuid.uuid4()), "event": event, "created_at": timezone.now().isoformat(), "data": data}
        row = WebhookDelivery.objects.create(endpoint=endpoint, event=event, payload=payload)
        ids.append(row.pk)
        transaction.on_commit(lambda delivery_id=row.pk: webhook_enqueue(delivery_id=delivery_id), robust=True)
    return ids


def webhook_wanted(*, event: str) -> bool:
    """Does any active endpoint want ``event``? One query, so a caller
    emitting for many orders asks once (the hot path usually has none)."""
    return any(e.wants(event) for e in WebhookEndpoint.objects.filter(active=True).only("events"))


def webhook_enqueue(*, delivery_id: int):
    """Put the send job on the queue under its deterministic id. A network call:
    never inside a transaction."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    return django_rq.get_queue(QUEUE).enqueue(
        "delivery.webhooks.webhook_send_job", delivery_id, job_id=f"webhook-{delivery_id}",
        retry=Retry(max=len(schedule), interval=schedule) if schedule else None,
    )


class WebhookSendFailed(Exception):
    code = "WEBHOOK_SEND_FAILED"


def webhook_body(*, delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_send(*, delivery_id: int) -> str:
    """POST one delivery. Outside any transaction. Returns the new status;
    raises WebhookSendFailed while retries remain (so RQ retries)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if delivery.status != WebhookDeliveryStatus.PENDING:
        return delivery.status
    body = webhook_body(delivery=delivery)
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        delivery.endpoint.url, data=body, method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Kamidrop-Webhooks/1",
            "X-Kamidrop-Event": delivery.event,
            "X-Kamidrop-Delivery": str(delivery.payload.get("id", delivery.pk)),
            "X-Kamidrop-Timestamp": timestamp,
            "X-Kamidrop-Signature": webhook_sign(secret=delivery.endpoint.secret, timestamp=timestamp, body=body),
        },
    )
    code, error = None, ""
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        attempts=F("attempts") + 1, last_attempt_at=now, response_code=code, last_error=error
    )
    if not error:
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDeliveryStatus.PENDING).update(
            status=WebhookDeliveryStatus.SENT, sent_at=now
        )
        return WebhookDeliveryStatus.SENT
    delivery.refresh_from_db(fields=["attempts"])
    # rq's own retry counter is not ours to trust: decide "final" from the row.
    if delivery.attempts > len(settings.WEBHOOK_RETRY_SCHEDULE):
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDeliveryStatus.PENDING).update(
            status=WebhookDeliveryStatus.FAILED
        )
        logger.warning("webhook %s (%s) failed for good after %d attempts: %s",
                       delivery_id, delivery.event, delivery.attempts, error)
        return WebhookDeliveryStatus.FAILED
    raise WebhookSendFailed(f"webhook {delivery_id} attempt {delivery.attempts}: {error}")


def webhook_send_job(delivery_id: int) -> str:
    """RQ job."""
    return webhook_send(delivery_id=delivery_id)


def webhook_resend(*, delivery_id: int) -> bool:
    """Staff: send a FAILED (or SENT) delivery again with a fresh retry budget."""
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(pk=delivery_id).exclude(
            status=WebhookDeliveryStatus.PENDING
        ).update(status=WebhookDeliveryStatus.PENDING, attempts=0, last_error="", sent_at=None)
        if updated:
            transaction.on_commit(lambda delivery_id=delivery_id: webhook_enqueue(delivery_id=delivery_id), robust=True)
    return bool(updated)
