"""Delivery services: every attempt recorded, permanent errors dead-lettered at
once, dead letters alerted once per incident, the send lease."""

import asyncio
import threading
from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from delivery.models import AlertKind, AttemptOutcome, DeliveryAttempt, DeliveryStatus, OwnerAlert
from delivery.services import delivery_send
from shop.models import OrderEventType, OrderStatus
from shop.services import ResendNotAllowed, order_resend
from tests.conftest import NOTIFY_URL, sandbox_notice
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db


def _attempts(delivery):
    return list(
        DeliveryAttempt.objects.filter(delivery=delivery).order_by("id")
        .values_list("number", "outcome", "error", "provider_message_id")
    )


def test_every_attempt_is_recorded_with_time_error_message_id_and_duration(paid_order, run_worker, smtp_server):
    # given: the first attempt meets a busy server
    smtp_server.refuse = True
    run_worker()
    # when: the retry comes due and the server takes it
    smtp_server.refuse = False
    queue = django_rq.get_queue("delivery")
    delivery = email_of(paid_order)
    queue.enqueue_job(queue.fetch_job(delivery.job_id))
    run_worker()
    # then
    delivery.refresh_from_db()
    message_id = f"<delivery-{delivery.pk}.{paid_order.order_no}@kamidrop.local>"
    assert _attempts(delivery) == [
        (1, AttemptOutcome.RETRY, "SMTPDataError: (451, b'Requested action aborted: try again later')", ""),
        (2, AttemptOutcome.SENT, "", message_id),
    ]
    for attempt in DeliveryAttempt.objects.filter(delivery=delivery):
        assert attempt.finished_at >= attempt.started_at
        assert attempt.duration_ms is not None and attempt.duration_ms < 10_000
    assert (delivery.status, delivery.attempts, delivery.sending_started_at) == (DeliveryStatus.SENT, 2, None)


def test_rejected_address_fails_at_once_with_the_reason_and_alerts_the_owner(
    pay, make_product, make_unpaid_order, run_worker, refusing_smtp
):
    # given
    order = pay(make_unpaid_order(product=make_product(keys=1), email="nobody@example.com"))
    # when
    run_worker()
    # then: FAILED after one attempt, nothing left to retry
    delivery = email_of(order)
    reason = "PermanentDeliveryError: recipient refused: 550 5.1.1 Recipient address rejected: no such user"
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.FAILED, 1, reason)
    assert _attempts(delivery) == [(1, AttemptOutcome.REJECTED, reason, "")]
    assert ScheduledJobRegistry(queue=django_rq.get_queue("delivery")).get_job_ids() == []
    assert refusing_smtp.messages == []
    event = order.events.get(type=OrderEventType.DELIVERY_FAILED)
    assert event.data == {"channel": "EMAIL", "attempts": 1, "reason": reason}
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key, alert.occurrences) == (AlertKind.DEAD_LETTER, "dead-letter:EMAIL", 1)
    assert alert.subject == f"Email delivery failed for good (order {order.order_no})"
    assert reason in alert.body
    assert "PRODUCT-1-KEY" not in alert.body


def test_dead_letters_of_one_channel_are_one_alert_counting_them(
    pay, make_product, make_unpaid_order, run_worker, refusing_smtp
):
    # given
    product = make_product(keys=3)
    orders = [pay(make_unpaid_order(product=product, email="nobody@example.com")) for _ in range(3)]
    # when
    run_worker()
    # then
    assert [email_of(o).status for o in orders] == [DeliveryStatus.FAILED] * 3
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.occurrences) == (AlertKind.DEAD_LETTER, 3)


def test_permanent_5xx_reply_to_the_message_is_not_retried(paid_order, run_worker, smtp_server):
    # given
    async def handle_DATA(server, session, envelope):
        return "554 5.7.1 Message rejected as spam"

    smtp_server.handle_DATA = handle_DATA
    # when
    run_worker()
    # then
    delivery = email_of(paid_order)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert delivery.last_error == "PermanentDeliveryError: refused with 554: 5.7.1 Message rejected as spam"
    assert ScheduledJobRegistry(queue=django_rq.get_queue("delivery")).get_job_ids() == []


def test_a_run_that_finds_the_send_claimed_leaves_it_alone(paid_order, run_worker, smtp_server):
    # given: another worker is sending this delivery right now
    delivery = email_of(paid_order)
    claimed_at = timezone.now()
    type(delivery).objects.filter(pk=delivery.pk).update(sending_started_at=claimed_at)
    # when: a duplicate of the job runs
    run_worker()
    # then: nothing sent, nothing counted, the claim untouched
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.sending_started_at) == (DeliveryStatus.PENDING, 0, claimed_at)
    assert smtp_server.messages == []
    assert DeliveryAttempt.objects.count() == 0


def test_a_lapsed_claim_is_taken_over(paid_order, smtp_server, settings):
    # given: a sender that claimed the delivery and died
    delivery = email_of(paid_order)
    stale = timezone.now() - timedelta(seconds=settings.DELIVERY_SEND_LEASE_SECONDS + 1)
    type(delivery).objects.filter(pk=delivery.pk).update(sending_started_at=stale, attempts=1)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=stale)
    # when
    status = delivery_send(delivery_id=delivery.pk)
    # then
    assert status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1
    assert [(a[0], a[1]) for a in _attempts(delivery)] == [(1, AttemptOutcome.STARTED), (2, AttemptOutcome.SENT)]


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_same_job_at_once_send_it_once(
    client, make_product, make_unpaid_order, smtp_server
):
    # given: a slow SMTP server, so the two runs overlap
    order = make_unpaid_order(product=make_product(keys=1))
    assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
    delivery = email_of(order)
    django_rq.get_queue("delivery").empty()
    received = []

    async def handle_DATA(server, session, envelope):
        await asyncio.sleep(0.5)
        received.append(envelope)
        return "250 OK"

    smtp_server.handle_DATA = handle_DATA
    barrier = threading.Barrier(2)
    results = []

    def run():
        barrier.wait()
        try:
            results.append(delivery_send(delivery_id=delivery.pk))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then
    assert sorted(results) == [DeliveryStatus.PENDING, DeliveryStatus.SENT]
    assert len(received) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_resend_of_a_pending_delivery_only_kicks_its_job(paid_order, django_capture_on_commit_callbacks):
    # given: the job was lost before it ran
    queue = django_rq.get_queue("delivery")
    queue.empty()
    delivery = email_of(paid_order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        resent = order_resend(order_id=paid_order.pk, actor="buyer")
    # then
    assert resent == [delivery.pk]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.resends, delivery.attempts) == (DeliveryStatus.PENDING, 0, 0)
    assert queue.job_ids == [delivery.job_id]


def test_resend_before_the_keys_are_handed_over_is_refused(make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=1))
    # when
    with pytest.raises(ResendNotAllowed):
        order_resend(order_id=order.pk, actor="buyer")
    # then
    assert order.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 0
