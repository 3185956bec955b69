"""Sending, from claim to record: the batch and the single send, retries and dead letters.

A send claims its deliveries (the send lease), transmits them outside any
transaction, then records the outcome in one short transaction that first
locks the orders of the sent deliveries, by id (``shop.project.locks``: the
lock order of the paid transaction and of a resend). In that same
transaction ``DELIVERY_RECORDED_HOOK`` hands the outcome to the shop, which
writes the timeline and settles the orders. What a channel accepted is noted
in Redis first (``receipts``), so a run after a lost recording records the
send instead of making it again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from delivery.alerts import owner_alert_raise
from delivery.channels import channel_get
from delivery.channels.base import PermanentDeliveryError
from delivery.models import AlertKind, AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus
from delivery.services.outbox import delivery_retry_enqueue
from delivery.services.receipts import receipts_find, receipts_note
from inventory.selectors import keys_for_orders
from shop.project.locks import orders_lock

logger = logging.getLogger(__name__)

# A batch stops starting sends after this long (the rest are retried one by
# one): well inside the job timeout (60 s) and the send lease (90 s), so a
# slow mail server cannot make a live batch look dead or time it out mid-send.
BATCH_SEND_SECONDS = 30

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
    resends: int = 0  # which send of the delivery this is (a resend is a new one): its receipt's key

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


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that just became FAILED, and why (empty: its retries ran out)."""

    delivery: Delivery
    reason: str = ""


def deliveries_send(*, delivery_ids: list[int]) -> dict[str, int]:
    """Send a batch of deliveries (the batch job); the shop settles the
    orders whose every channel has landed.

    The sends happen outside any transaction, over one connection per
    channel; the outcomes are recorded and the orders settled in one short
    transaction. A delivery rejected for good is dead-lettered at once; one
    that failed otherwise is retried on its own job on the rest of the retry
    schedule (or dead-lettered if that is used up). Returns counts by outcome.
    """
    recorded = _deliveries_send(delivery_ids=delivery_ids)
    for send in recorded.rejected:
        delivery_dead_letter(delivery_id=send.delivery.pk, reason=send.error)
    for send in recorded.retry:
        if not delivery_failed(delivery_id=send.delivery.pk):
            delivery_retry_enqueue(delivery_id=send.delivery.pk)
    return {"sent": len(recorded.sent), "retry": len(recorded.retry), "rejected": len(recorded.rejected)}


def delivery_send(*, delivery_id: int) -> str:
    """Send one delivery (its own job: a retry, a resend, ``redeliver``, the
    sweeper's rescue); when every channel has landed, the order is DELIVERED.

    A SENT or FAILED delivery, or one another run is sending, is left alone
    and its status returned. A transient failure is re-raised, so the queue
    retries on its schedule; a permanent one dead-letters the delivery.
    """
    recorded = _deliveries_send(delivery_ids=[delivery_id])
    if recorded.rejected:
        delivery_dead_letter(delivery_id=delivery_id, reason=recorded.rejected[0].error)
        return DeliveryStatus.FAILED
    if recorded.retry:
        raise recorded.retry[0].result
    if recorded.sent:
        return DeliveryStatus.SENT
    return Delivery.objects.values_list("status", flat=True).get(pk=delivery_id)


def _deliveries_send(*, delivery_ids: list[int]) -> SendsRecorded:
    """Claim, send, record and settle: what the batch and the single send share.

    Recording locks the orders of the sent deliveries (in id order, before
    their delivery rows: the lock order of the paid transaction), so two
    channels of one order finishing together settle it exactly once.
    """
    sends = deliveries_claim(delivery_ids=delivery_ids)
    if not sends:
        return SendsRecorded()
    # A send a channel accepted before, whose recording never happened: recorded now, not made again.
    receipts = receipts_find(claimed=[(send.delivery.pk, send.delivery.order.order_no, send.resends)
                                      for send in sends])
    for send in sends:
        if send.delivery.pk in receipts:
            send.result = receipts[send.delivery.pk]
            logger.warning("delivery %s was sent before its outcome was recorded: recorded now, not sent again",
                           send.delivery.pk)
    fresh = [send for send in sends if send.delivery.pk not in receipts]
    seconds = deliveries_transmit(sends=fresh) if fresh else 0.0
    order_ids = sorted({send.delivery.order_id for send in sends if send.sent})
    with transaction.atomic():
        orders = orders_lock(ids=order_ids)
        recorded = deliveries_record(sends=sends, seconds=seconds)
        deliveries_recorded_announce(orders=orders, sent=recorded.sent)
    return recorded


def deliveries_recorded_announce(*, orders: Sequence, sent: Sequence[Delivery] = (),
                                 dead_lettered: Sequence[DeadLetter] = ()) -> None:
    """Deliveries just became SENT or FAILED: call ``DELIVERY_RECORDED_HOOK``
    (a dotted path, as EMAIL_BACKEND; by default the shop's settlement, which
    writes the timeline and settles the orders whose every channel landed),
    which a lower app names rather than imports. Call inside the recording
    transaction, holding the locks of ``orders`` (those of ``sent``)."""
    if not (sent or dead_lettered):
        return
    hook = getattr(settings, "DELIVERY_RECORDED_HOOK", "shop.services.settlement.deliveries_recorded")
    if hook:
        import_string(hook)(orders=list(orders), sent=list(sent), dead_lettered=list(dead_lettered))


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
            claimed = sorted(cursor.fetchall())  # oldest first: RETURNING has no order
        if not claimed:
            return []
        attempts = DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(delivery_id=pk, number=number, resend=resends, started_at=now)
            for pk, number, resends in claimed
        )
    deliveries = Delivery.objects.select_related("order").in_bulk([pk for pk, _, _ in claimed])
    return [Send(delivery=deliveries[a.delivery_id], attempt_id=a.pk, resends=a.resend) for a in attempts]


def deliveries_transmit(*, sends: list[Send]) -> float:
    """Send every claimed delivery through its channel (a network call:
    outside any transaction and row lock), noting a receipt for each one
    accepted as it is (``receipts``). Each ``Send`` gets its result.
    The keys of the whole batch are read in one query. Returns the seconds
    the sending took."""
    started = time.monotonic()
    keys = keys_for_orders(order_ids={s.delivery.order_id for s in sends})
    by_channel: dict[str, list[Send]] = defaultdict(list)
    for send in sends:
        by_channel[send.delivery.channel].append(send)
    deadline = started + BATCH_SEND_SECONDS
    resends = {send.delivery.pk: send.resends for send in sends}

    def accepted(delivery, message_id) -> None:
        # Noted as it happens: a batch cut short (a kill, the database gone
        # before the recording) is not sent again for what already went out.
        receipts_note(sent=[(delivery.pk, delivery.order.order_no, resends[delivery.pk], message_id or "")])

    for channel, group in by_channel.items():
        try:
            results = channel_get(channel).send_many(
                deliveries=[s.delivery for s in group], keys_by_order=keys, deadline=deadline, accepted=accepted
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


def delivery_failed(*, delivery_id: int) -> bool:
    """After a failed attempt: once the retries are used up, dead-letter the delivery."""
    if not delivery_attempts_exhausted(delivery_id=delivery_id):
        return False
    return delivery_dead_letter(delivery_id=delivery_id)


def delivery_dead_letter(*, delivery_id: int, reason: str = "") -> bool:
    """PENDING → FAILED (retries used up, or rejected for good with ``reason``):
    the owner is alerted, the buyer's timeline shows it (through
    ``DELIVERY_RECORDED_HOOK``, in the same transaction). False if it was not PENDING."""
    with transaction.atomic():
        if not delivery_mark_failed(delivery_id=delivery_id, reason=reason):
            return False
        delivery = Delivery.objects.get(pk=delivery_id)
        deliveries_recorded_announce(orders=[], dead_lettered=[DeadLetter(delivery=delivery, reason=reason)])
    logger.error("delivery %s dead-lettered after %d attempts", delivery_id, delivery.attempts)
    return True


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
