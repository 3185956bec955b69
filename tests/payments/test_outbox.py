"""The transactional outbox: Redis down when a callback commits loses nothing.

A private Redis (not the shared embedded one) is stopped for the callback and
started again for the sweeper."""

import time

import django_rq
import pytest
from django.core.management import call_command

from delivery.models import Channel, Delivery, DeliveryStatus
from payments.models import Payment, PaymentStatus
from shop.models import OrderStatus
from shop.project import embedded
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def private_redis(tmp_path, monkeypatch):
    """The job queues on a Redis of this test's own; yields its root for stop/start."""
    url = embedded.redis_ensure(root=tmp_path)
    queues = django_rq.settings.QUEUES
    for name in list(queues):
        monkeypatch.setitem(queues, name, {**queues[name], "URL": url})
    yield tmp_path
    embedded.redis_stop(root=tmp_path)


def test_callback_while_redis_is_down_is_acknowledged_and_swept_later(
    client, private_redis, make_product, make_unpaid_order, run_worker, smtp_server, settings
):
    # given: an unpaid order, and the queue's Redis is down
    settings.SWEEP_ORPHAN_AFTER_SECONDS = 0
    settings.REDIS_BREAKER_SECONDS = 0.2
    order = make_unpaid_order(product=make_product(keys=2))
    assert embedded.redis_stop(root=private_redis) is True
    # when: the gateway notifies
    response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then: the payment is committed and acknowledged; the email waits in the outbox
    assert (response.status_code, response.content) == (200, b"success")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED
    email = Delivery.objects.get(order=order, channel=Channel.EMAIL)
    assert email.status == DeliveryStatus.PENDING
    assert Delivery.objects.get(order=order, channel=Channel.INBOX).status == DeliveryStatus.SENT
    assert smtp_server.messages == []

    # when: Redis is back, the sweeper runs, then the worker
    embedded.redis_ensure(root=private_redis)
    time.sleep(0.3)  # the breaker lets a trial connect through once its window has passed
    call_command("sweep")
    run_worker()
    # then: the email arrived, once
    assert [m.rcpt_tos for m in smtp_server.messages] == [["buyer@example.com"]]
    email.refresh_from_db()
    assert email.status == DeliveryStatus.SENT
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
