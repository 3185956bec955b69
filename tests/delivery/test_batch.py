"""Batch sends: first sends go out in batch jobs over one SMTP connection that
the worker keeps; a failure in a batch is retried on its own job with the
same attempts budget; a SENT delivery is never sent again."""

import threading
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from delivery.models import AttemptOutcome, Channel, Delivery, DeliveryAttempt, DeliveryStatus
from delivery.services import deliveries_enqueue, delivery_enqueue
from inventory.selectors import keys_for_order
from shop.models import Order, OrderEventType, OrderStatus
from tests.delivery.conftest import REFUSED_PREFIX, email_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid_orders(pay, make_product, make_unpaid_order):
    """``n`` paid orders (buyer0@…, buyer1@…), their emails PENDING and not
    enqueued yet: the test enqueues them as one batch, as the batch payment
    applier does."""

    def make(n: int, *, emails: list[str] | None = None) -> list[Order]:
        product = make_product(keys=n, slug="gift")
        orders = [
            pay(make_unpaid_order(product=product, email=emails[i] if emails else f"buyer{i}@example.com"))
            for i in range(n)
        ]
        django_rq.get_queue("delivery").empty()
        return orders

    return make


@pytest.fixture
def smtp_sessions(smtp_server):
    """Accepts every message and lists the SMTP sessions (connections) they came over."""
    sessions = []

    async def handle_DATA(server, session, envelope):
        if not any(s is session for s in sessions):
            sessions.append(session)
        smtp_server.messages.append(envelope)
        return "250 OK"

    smtp_server.handle_DATA = handle_DATA
    return sessions


def _release_scheduled() -> list[str]:
    """Enqueue every scheduled job now, as the scheduler does when they come due."""
    queue = django_rq.get_queue("delivery")
    registry = ScheduledJobRegistry(queue=queue)
    job_ids = registry.get_job_ids()
    for job_id in job_ids:
        registry.remove(job_id)
        queue.enqueue_job(queue.fetch_job(job_id))
    return job_ids


def _content_of(smtp_server, recipient: str) -> list[bytes]:
    return [m.content for m in smtp_server.messages if m.rcpt_tos == [recipient]]


def test_a_batch_goes_over_one_smtp_connection_each_email_with_its_own_keys(
    paid_orders, run_worker, smtp_server, smtp_sessions
):
    # given
    orders = paid_orders(5)
    emails = [email_of(o) for o in orders]
    job_ids = deliveries_enqueue(delivery_ids=[e.pk for e in emails])
    # when
    run_worker()
    # then: one job, one connection, five messages
    assert len(job_ids) == 1
    assert len(smtp_sessions) == 1
    assert len(smtp_server.messages) == 5
    secrets = {o.pk: [k.secret for k in keys_for_order(order_id=o.pk)] for o in orders}
    for i, (order, email) in enumerate(zip(orders, emails)):
        [content] = _content_of(smtp_server, f"buyer{i}@example.com")
        assert f"Message-ID: <delivery-{email.pk}.{order.order_no}@kamidrop.local>".encode() in content
        assert f"/orders/{order.order_no}".encode() in content
        [own] = secrets[order.pk]
        assert own.encode() in content
        assert [o.pk for o in orders if secrets[o.pk][0].encode() in content] == [order.pk]
        email.refresh_from_db()
        assert (email.status, email.attempts, email.sending_started_at) == (DeliveryStatus.SENT, 1, None)
        order.refresh_from_db()
        assert order.status == OrderStatus.DELIVERED
        assert order.events.filter(type=OrderEventType.DELIVERED).count() == 1
        assert order.events.filter(type=OrderEventType.DELIVERY_SENT, data__channel=Channel.EMAIL).count() == 1
    assert list(DeliveryAttempt.objects.filter(delivery__in=emails).values_list("outcome", flat=True)) == [
        AttemptOutcome.SENT
    ] * 5


def test_the_worker_keeps_its_connection_for_the_next_batch(
    paid_orders, run_worker, smtp_server, smtp_sessions, settings
):
    # given: five emails in batches of two
    settings.DELIVERY_BATCH_SIZE = 2
    orders = paid_orders(5)
    job_ids = deliveries_enqueue(delivery_ids=[email_of(o).pk for o in orders])
    # when
    run_worker()
    # then
    assert len(job_ids) == 3
    assert len(smtp_server.messages) == 5
    assert len(smtp_sessions) == 1


def test_a_connection_the_server_dropped_while_idle_is_replaced_without_a_retry(
    paid_orders, run_worker, smtp_server
):
    # given: a first batch went out, then the server closed the idle connection
    first, second = paid_orders(2)
    protocols = []

    async def handle_DATA(server, session, envelope):
        protocols.append(server)
        smtp_server.messages.append(envelope)
        return "250 OK"

    smtp_server.handle_DATA = handle_DATA
    deliveries_enqueue(delivery_ids=[email_of(first).pk])
    run_worker()
    [idle] = protocols
    closed = threading.Event()
    idle.loop.call_soon_threadsafe(lambda: (idle.transport.close(), closed.set()))
    assert closed.wait(timeout=5)
    # when: the next batch comes
    deliveries_enqueue(delivery_ids=[email_of(second).pk])
    run_worker()
    # then: sent on a new connection at the first attempt
    delivery = email_of(second)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["buyer0@example.com"], ["buyer1@example.com"]]
    assert protocols[1] is not idle


def test_a_broken_connection_costs_one_message_a_retry_not_the_batch(
    paid_orders, run_worker, smtp_server, settings
):
    # given: the server drops the connection in the middle of the second message
    orders = paid_orders(3, emails=["a@example.com", "drop@example.com", "c@example.com"])

    async def handle_DATA(server, session, envelope):
        if envelope.rcpt_tos == ["drop@example.com"]:
            server.transport.close()
            return "250 OK"  # never heard by the client
        smtp_server.messages.append(envelope)
        return "250 OK"

    smtp_server.handle_DATA = handle_DATA
    deliveries_enqueue(delivery_ids=[email_of(o).pk for o in orders])
    # when
    run_worker()
    # then: the others went out; the broken one is not assumed sent
    assert [m.rcpt_tos for m in smtp_server.messages] == [["a@example.com"], ["c@example.com"]]
    dropped = email_of(orders[1])
    assert (dropped.status, dropped.attempts, dropped.sending_started_at) == (DeliveryStatus.PENDING, 1, None)
    assert dropped.last_error.startswith("SMTPServerDisconnected")
    assert ScheduledJobRegistry(queue=django_rq.get_queue("delivery")).get_job_ids() == [dropped.job_id]
    assert [email_of(o).status for o in (orders[0], orders[2])] == [DeliveryStatus.SENT] * 2


def test_a_transient_failure_in_a_batch_is_retried_on_its_own_job_and_the_others_are_sent(
    paid_orders, run_worker, smtp_server, smtp_sessions, settings
):
    # given: the server is busy for one recipient
    orders = paid_orders(3, emails=["a@example.com", "busy@example.com", "c@example.com"])
    busy = True

    async def handle_DATA(server, session, envelope):
        if not any(s is session for s in smtp_sessions):
            smtp_sessions.append(session)
        if busy and envelope.rcpt_tos == ["busy@example.com"]:
            return "451 4.3.0 Try again later"
        smtp_server.messages.append(envelope)
        return "250 OK"

    smtp_server.handle_DATA = handle_DATA
    deliveries_enqueue(delivery_ids=[email_of(o).pk for o in orders])
    # when
    before = timezone.now()
    run_worker()
    # then: the others are SENT over the same connection; the busy one waits for its own job
    assert [m.rcpt_tos for m in smtp_server.messages] == [["a@example.com"], ["c@example.com"]]
    assert len(smtp_sessions) == 1
    delivery = email_of(orders[1])
    assert (delivery.status, delivery.attempts, delivery.sending_started_at) == (DeliveryStatus.PENDING, 1, None)
    assert delivery.last_error == "SMTPDataError: (451, b'4.3.0 Try again later')"
    assert list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("outcome", flat=True)) == [
        AttemptOutcome.RETRY
    ]
    queue = django_rq.get_queue("delivery")
    registry = ScheduledJobRegistry(queue=queue)
    assert registry.get_job_ids() == [delivery.job_id]
    first, *rest = settings.DELIVERY_RETRY_SCHEDULE
    due = registry.get_scheduled_time(queue.fetch_job(delivery.job_id))
    assert before + timedelta(seconds=first - 1) <= due <= timezone.now() + timedelta(seconds=first + 1)
    job = queue.fetch_job(delivery.job_id)
    assert (job.retries_left, job.retry_intervals) == (len(rest), rest)
    assert [email_of(o).status for o in (orders[0], orders[2])] == [DeliveryStatus.SENT] * 2
    orders[1].refresh_from_db()
    assert orders[1].status == OrderStatus.FULFILLING
    # and when the retry comes due and the server takes it
    busy = False
    _release_scheduled()
    run_worker()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 2, "")
    assert [m.rcpt_tos for m in smtp_server.messages][-1] == ["busy@example.com"]
    assert len(smtp_server.messages) == 3
    orders[1].refresh_from_db()
    assert orders[1].status == OrderStatus.DELIVERED
    assert orders[1].events.filter(type=OrderEventType.DELIVERED).count() == 1


def test_a_delivery_failing_in_a_batch_gets_the_attempts_of_one_sent_alone(
    paid_orders, run_worker, smtp_server, settings
):
    # given: a two-step schedule and a server that keeps refusing; one email
    # starts in a batch, the other on its own job (as before batches)
    settings.DELIVERY_RETRY_SCHEDULE = [1, 1]
    in_batch, alone = paid_orders(2)
    smtp_server.refuse = True
    deliveries_enqueue(delivery_ids=[email_of(in_batch).pk])
    delivery_enqueue(delivery_id=email_of(alone).pk)
    # when: every retry comes due in turn until no job is left
    run_worker()
    rounds = 0
    while _release_scheduled():
        run_worker()
        rounds += 1
        assert rounds <= 5
    # then: both dead-lettered after 1 + len(schedule) attempts
    for order in (in_batch, alone):
        delivery = email_of(order)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
        assert list(order.events.filter(type=OrderEventType.DELIVERY_FAILED).values_list("data", flat=True)) == [
            {"channel": "EMAIL", "attempts": 3}
        ]
        assert list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("outcome", flat=True)) == [
            AttemptOutcome.RETRY
        ] * 3
    assert smtp_server.messages == []


def test_with_no_retry_schedule_a_failure_in_a_batch_is_dead_lettered_at_once(
    paid_orders, run_worker, smtp_server, settings
):
    # given
    settings.DELIVERY_RETRY_SCHEDULE = []
    [order] = paid_orders(1)
    smtp_server.refuse = True
    deliveries_enqueue(delivery_ids=[email_of(order).pk])
    # when
    run_worker()
    # then
    delivery = email_of(order)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert ScheduledJobRegistry(queue=django_rq.get_queue("delivery")).get_job_ids() == []
    assert order.events.filter(type=OrderEventType.DELIVERY_FAILED).count() == 1


def test_a_permanent_failure_in_a_batch_is_dead_lettered_at_once(paid_orders, run_worker, refusing_smtp):
    # given
    orders = paid_orders(3, emails=["a@example.com", f"{REFUSED_PREFIX}example.com", "c@example.com"])
    deliveries_enqueue(delivery_ids=[email_of(o).pk for o in orders])
    # when
    run_worker()
    # then
    refused = email_of(orders[1])
    reason = "PermanentDeliveryError: recipient refused: 550 5.1.1 Recipient address rejected: no such user"
    assert (refused.status, refused.attempts, refused.last_error) == (DeliveryStatus.FAILED, 1, reason)
    assert list(DeliveryAttempt.objects.filter(delivery=refused).values_list("outcome", "error")) == [
        (AttemptOutcome.REJECTED, reason)
    ]
    assert list(orders[1].events.filter(type=OrderEventType.DELIVERY_FAILED).values_list("data", flat=True)) == [
        {"channel": "EMAIL", "attempts": 1, "reason": reason}
    ]
    assert ScheduledJobRegistry(queue=django_rq.get_queue("delivery")).get_job_ids() == []
    assert [m.rcpt_tos for m in refusing_smtp.messages] == [["a@example.com"], ["c@example.com"]]
    assert [email_of(o).status for o in (orders[0], orders[2])] == [DeliveryStatus.SENT] * 2


def test_a_duplicate_batch_job_sends_nothing_more(paid_orders, run_worker, smtp_server):
    # given: a batch that went out
    orders = paid_orders(3)
    ids = [email_of(o).pk for o in orders]
    [job_id] = deliveries_enqueue(delivery_ids=ids)
    run_worker()
    # when: the same batch is enqueued and run again
    assert deliveries_enqueue(delivery_ids=list(reversed(ids))) == [job_id]
    run_worker()
    # then
    assert len(smtp_server.messages) == 3
    assert [email_of(o).attempts for o in orders] == [1, 1, 1]
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 3
    for order in orders:
        assert order.events.filter(type=OrderEventType.DELIVERY_SENT, data__channel=Channel.EMAIL).count() == 1
        assert order.events.filter(type=OrderEventType.DELIVERED).count() == 1


def test_a_delivery_another_run_is_sending_is_left_out_of_the_batch(paid_orders, run_worker, smtp_server):
    # given: one of the batch is being sent right now by another run
    orders = paid_orders(2)
    claimed_at = timezone.now()
    Delivery.objects.filter(pk=email_of(orders[0]).pk).update(sending_started_at=claimed_at)
    deliveries_enqueue(delivery_ids=[email_of(o).pk for o in orders])
    # when
    run_worker()
    # then
    held = email_of(orders[0])
    assert (held.status, held.attempts, held.sending_started_at) == (DeliveryStatus.PENDING, 0, claimed_at)
    assert email_of(orders[1]).status == DeliveryStatus.SENT
    assert [m.rcpt_tos for m in smtp_server.messages] == [["buyer1@example.com"]]


def test_an_order_whose_two_channels_land_in_one_batch_settles_once(
    pay, make_product, make_unpaid_order, run_worker, smtp_server, capsys
):
    # given: an order delivered by email and SMS (console backend)
    order = make_unpaid_order(product=make_product(keys=1, slug="sim", deliver_by_sms=True))
    Order.objects.filter(pk=order.pk).update(phone="+8613800138000")
    order = pay(order)
    django_rq.get_queue("delivery").empty()
    deliveries = Delivery.objects.filter(order=order).exclude(channel=Channel.INBOX)
    deliveries_enqueue(delivery_ids=[d.pk for d in deliveries])
    # when
    run_worker()
    # then
    assert sorted(d.channel for d in deliveries) == [Channel.EMAIL, Channel.SMS]
    assert {d.status for d in deliveries.all()} == {DeliveryStatus.SENT}
    assert len(smtp_server.messages) == 1
    assert "SIM-KEY-00000" in capsys.readouterr().out
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert order.events.filter(type=OrderEventType.DELIVERED).count() == 1
    assert sorted(
        order.events.filter(type=OrderEventType.DELIVERY_SENT).values_list("data__channel", flat=True)
    ) == [Channel.EMAIL, Channel.INBOX, Channel.SMS]
