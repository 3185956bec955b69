"""The delivery job: sends by real SMTP, retries on failure, never sends twice."""


import django_rq
import pytest
from rq.registry import ScheduledJobRegistry

from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus, OwnerAlert
from delivery.services import delivery_enqueue
from shop.models import OrderEventType, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid_order(client, make_product, make_unpaid_order, django_capture_on_commit_callbacks):
    order = make_unpaid_order(product=make_product(keys=2, slug="gift"), quantity=1, email="buyer@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
    return order


def _email(order) -> Delivery:
    return Delivery.objects.get(order=order, channel=Channel.EMAIL)


def test_job_sends_email_marks_sent_and_completes_order(paid_order, run_worker, smtp_server):
    # when
    run_worker()
    # then
    delivery = _email(paid_order)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 1, "")
    assert delivery.sent_at is not None
    assert delivery.provider_message_id == f"<delivery-{delivery.pk}.{paid_order.order_no}@kamidrop.local>"
    assert len(smtp_server.messages) == 1
    assert b"GIFT-KEY-00000" in smtp_server.messages[0].content
    paid_order.refresh_from_db()
    assert paid_order.status == OrderStatus.DELIVERED
    assert paid_order.delivered_at is not None


def test_sent_delivery_is_never_sent_again(paid_order, run_worker, smtp_server):
    # given
    run_worker()
    # when: a duplicate job (a sweeper re-enqueue, a retried job) runs
    delivery_enqueue(delivery_id=_email(paid_order).pk)
    run_worker()
    # then
    assert len(smtp_server.messages) == 1
    assert _email(paid_order).attempts == 1
    assert paid_order.events.filter(type=OrderEventType.DELIVERED).count() == 1


def test_smtp_failure_is_recorded_and_retried_on_schedule(paid_order, run_worker, smtp_server, settings):
    # given
    smtp_server.refuse = True
    # when
    run_worker()
    # then
    delivery = _email(paid_order)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert delivery.last_error.startswith("SMTPDataError: (451")
    registry = ScheduledJobRegistry(queue=django_rq.get_queue("delivery"))
    assert registry.get_job_ids() == [f"delivery-{delivery.pk}"]
    paid_order.refresh_from_db()
    assert paid_order.status == OrderStatus.FULFILLING
    # and when the server recovers, the retry delivers
    smtp_server.refuse = False
    queue = django_rq.get_queue("delivery")
    queue.enqueue_job(queue.fetch_job(f"delivery-{delivery.pk}"))
    run_worker()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 2, "")
    assert len(smtp_server.messages) == 1


def test_delivery_is_dead_lettered_when_retries_run_out(client, make_product, make_unpaid_order,
                                                        django_capture_on_commit_callbacks, run_worker,
                                                        smtp_server, settings):
    # given: a one-step schedule (one retry after 1 s), and a server that keeps refusing
    settings.DELIVERY_RETRY_SCHEDULE = [1]
    order = make_unpaid_order(product=make_product(keys=1))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    smtp_server.refuse = True
    run_worker()
    queue = django_rq.get_queue("delivery")
    delivery = _email(order)
    assert _email(order).status == DeliveryStatus.PENDING
    # when: the retry comes due and fails too
    queue.enqueue_job(queue.fetch_job(f"delivery-{delivery.pk}"))
    run_worker()
    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
    event = order.events.get(type=OrderEventType.DELIVERY_FAILED)
    assert event.data == {"channel": "EMAIL", "attempts": 2}
    assert smtp_server.messages == []
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key, alert.occurrences) == (AlertKind.DEAD_LETTER, "dead-letter:EMAIL", 1)
    assert delivery.last_error in alert.body
