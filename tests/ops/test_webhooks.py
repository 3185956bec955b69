"""Outbound merchant webhooks: emitted by the shop's services, signed, retried, logged."""

import hashlib
import hmac
import json

import django_rq
import pytest
from rq.registry import ScheduledJobRegistry

from delivery.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint, WebhookEvent
from delivery.webhooks import WebhookSendFailed, webhook_emit, webhook_send
from inventory.models import KeyPolicy
from payments.services import payment_refund
from shop.models import OrderStatus

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-1"


def signature_valid(received: dict, secret: str = SECRET) -> bool:
    timestamp = received["headers"]["X-Kamidrop-Timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + received["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(received["headers"]["X-Kamidrop-Signature"], f"sha256={mac}")


@pytest.fixture
def endpoint(http_receiver):
    return WebhookEndpoint.objects.create(url=f"{http_receiver.url}/hook", secret=SECRET)


def test_a_paid_and_delivered_order_is_posted_signed_to_the_endpoint(endpoint, http_receiver, delivered_order):
    # then: paid (at the notify) and delivered (after the email went), in that order
    assert [r["headers"]["X-Kamidrop-Event"] for r in http_receiver.received] == ["order.paid", "order.delivered"]
    for received in http_receiver.received:
        assert received["path"] == "/hook"
        assert signature_valid(received)
    paid = json.loads(http_receiver.received[0]["body"])
    assert paid["event"] == "order.paid"
    assert paid["data"]["order_no"] == delivered_order.order_no
    assert paid["data"]["status"] == OrderStatus.PAID
    assert paid["data"]["items"] == [{"product": "gift", "quantity": 2}]
    delivered = json.loads(http_receiver.received[1]["body"])
    assert delivered["data"]["status"] == OrderStatus.DELIVERED
    assert b"GIFT-KEY" not in http_receiver.received[0]["body"] + http_receiver.received[1]["body"]
    assert list(WebhookDelivery.objects.order_by("id").values_list("event", "status", "attempts", "response_code")) == [
        ("order.paid", "SENT", 1, 200), ("order.delivered", "SENT", 1, 200),
    ]


def test_a_tampered_body_fails_the_signature(endpoint, http_receiver, django_capture_on_commit_callbacks, run_worker):
    # given
    with django_capture_on_commit_callbacks(execute=True):
        webhook_emit(event=WebhookEvent.ORDER_PAID, data={"order_no": "1"})
    run_worker()
    received = dict(http_receiver.received[0])
    # when
    received["body"] = received["body"].replace(b'"1"', b'"2"')
    # then
    assert signature_valid(http_receiver.received[0])
    assert not signature_valid(received)
    assert not signature_valid(http_receiver.received[0], secret="other")


def test_only_endpoints_that_want_the_event_get_it(http_receiver, django_capture_on_commit_callbacks):
    # given
    WebhookEndpoint.objects.create(url=http_receiver.url, secret=SECRET, events=["order.refunded"])
    WebhookEndpoint.objects.create(url=http_receiver.url, secret=SECRET, active=False)
    wants_all = WebhookEndpoint.objects.create(url=http_receiver.url, secret=SECRET)
    # when
    ids = webhook_emit(event=WebhookEvent.ORDER_PAID, data={})
    # then
    assert list(WebhookDelivery.objects.filter(pk__in=ids).values_list("endpoint", flat=True)) == [wants_all.pk]


def test_a_failed_send_is_retried_on_the_schedule_then_failed(endpoint, http_receiver, settings):
    # given: the endpoint answers 500 three times; two retries allowed
    settings.WEBHOOK_RETRY_SCHEDULE = [10, 60]
    http_receiver.answers = [500, 500, 500]
    (delivery_id,) = webhook_emit(event=WebhookEvent.ORDER_PAID, data={"order_no": "1"})
    # when / then: the first two attempts raise (so RQ retries), the third gives up
    for attempt in (1, 2):
        with pytest.raises(WebhookSendFailed):
            webhook_send(delivery_id=delivery_id)
        row = WebhookDelivery.objects.get(pk=delivery_id)
        assert (row.status, row.attempts, row.response_code, row.last_error) == ("PENDING", attempt, 500, "HTTP 500")
    assert webhook_send(delivery_id=delivery_id) == WebhookDeliveryStatus.FAILED
    assert WebhookDelivery.objects.get(pk=delivery_id).attempts == 3
    assert len(http_receiver.received) == 3
    # and a sent or failed delivery is not sent again by a stray job
    assert webhook_send(delivery_id=delivery_id) == WebhookDeliveryStatus.FAILED
    assert len(http_receiver.received) == 3


def test_the_job_schedules_a_retry_with_back_off(endpoint, http_receiver, django_capture_on_commit_callbacks, run_worker):
    # given
    http_receiver.answers = [503]
    with django_capture_on_commit_callbacks(execute=True):
        (delivery_id,) = webhook_emit(event=WebhookEvent.ORDER_PAID, data={})
    # when
    run_worker()
    # then
    queue = django_rq.get_queue("default")
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [f"webhook-{delivery_id}"]
    assert WebhookDelivery.objects.get(pk=delivery_id).status == WebhookDeliveryStatus.PENDING


def test_an_unreachable_endpoint_is_logged_as_an_error(settings):
    # given: nothing listens there
    settings.WEBHOOK_RETRY_SCHEDULE = []
    endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret=SECRET)
    (delivery_id,) = webhook_emit(event=WebhookEvent.ORDER_PAID, data={})
    # when
    status = webhook_send(delivery_id=delivery_id)
    # then
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert (status, row.attempts, row.response_code) == (WebhookDeliveryStatus.FAILED, 1, None)
    assert row.last_error.startswith("URLError")
    assert row.endpoint == endpoint


def test_a_refund_emits_order_refunded(endpoint, pay, make_product, make_unpaid_order, http_receiver,
                                       django_capture_on_commit_callbacks, run_worker, settings):
    # given: an order held waiting for stock
    order = pay(make_unpaid_order(product=make_product(keys=0), quantity=1))
    assert order.status == OrderStatus.AWAITING_STOCK
    # when
    with django_capture_on_commit_callbacks(execute=True):
        payment_refund(order=order, actor="staff:owner", reason="no stock")
    run_worker()
    # then
    events = [r["headers"]["X-Kamidrop-Event"] for r in http_receiver.received]
    assert events == ["order.paid", "order.refunded"]
    assert json.loads(http_receiver.received[1]["body"])["data"]["status"] == OrderStatus.REFUNDED


def test_low_stock_emits_product_low_stock(endpoint, pay, make_product, make_unpaid_order, http_receiver, run_worker):
    # given: a product alerting at 1 key left
    product = make_product(keys=2)
    KeyPolicy.objects.update_or_create(product=product, defaults={"low_stock_threshold": 1})
    # when
    pay(make_unpaid_order(product=product, quantity=1))
    run_worker()
    # then
    low = [json.loads(r["body"]) for r in http_receiver.received if r["headers"]["X-Kamidrop-Event"] == "product.low_stock"]
    assert [entry["data"] for entry in low] == [
        {"product": product.slug, "name": product.name, "threshold": 1, "available": 1}
    ]
