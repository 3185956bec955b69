"""Send receipts: what a channel accepted, noted in Redis before the
database records it, so a send is never made twice.

A batch transmits outside any transaction, then records the outcome. If the
recording never happens (the database went away mid-batch, the worker was
killed between the two), the deliveries keep their send lease; when it lapses
the sweeper's job claims them again, and without a receipt the buyer would get
the email (or SMS) a second time. With one, that run records the earlier
send instead (its message id, one attempt saying so) and transmits nothing.

Receipts are keyed by delivery, its order's number and the resend count (a
resend the buyer asked for is a new send; the order number, drawn at random,
keeps a database restored from a backup, whose ids come round again, from
taking another delivery's receipt for its own) and live a day, far beyond any
lease. Best effort: with Redis
down as well as the database, a duplicate is still possible (never a loss).
"""

from __future__ import annotations

import logging

import django_rq
from redis.exceptions import RedisError

from shop.project.redis_breaker import redis_client_for

logger = logging.getLogger(__name__)

RECEIPT_SECONDS = 24 * 3600
QUEUE = "delivery"  # the delivery queue's Redis


def _key(delivery_id: int, order_no: str, resends: int) -> str:
    return f"kd:delivery-sent:{delivery_id}:{order_no}:{resends}"


def _redis():
    return redis_client_for(django_rq.settings.QUEUES[QUEUE], socket_timeout=2)


def receipts_note(*, sent: list[tuple[int, str, int, str]]) -> None:
    """(delivery id, order number, resends, message id) of each send a channel just
    accepted: called for each one as the channel reports it, so a batch
    killed half-way has the first half's receipts."""
    if not sent:
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for delivery_id, order_no, resends, message_id in sent:
            pipe.set(_key(delivery_id, order_no, resends), message_id, ex=RECEIPT_SECONDS)
        pipe.execute()
    except RedisError as exc:
        logger.warning("send receipts for %d deliveries not noted (%s)", len(sent), type(exc).__name__)


def receipts_find(*, claimed: list[tuple[int, str, int]]) -> dict[int, str]:
    """delivery id → message id, for the claimed (delivery id, order number,
    resends) already sent once."""
    if not claimed:
        return {}
    try:
        found = _redis().mget([_key(*key) for key in claimed])
    except RedisError as exc:
        logger.warning("send receipts not read (%s): sending without them", type(exc).__name__)
        return {}
    return {delivery_id: (value.decode() if isinstance(value, bytes) else value)
            for (delivery_id, _, _), value in zip(claimed, found, strict=True) if value is not None}
