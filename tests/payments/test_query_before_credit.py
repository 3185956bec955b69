"""Query before credit: a signed EPay notice pays an order only once the
gateway's api.php confirms the trade is paid with that amount."""

from datetime import timedelta

import pytest
from django.utils import timezone

from delivery.models import OwnerAlert
from inventory.models import CardKey
from payments.models import PaymentEvent, PaymentEventOutcome
from payments.services import payment_notices_apply
from shop.models import OrderStatus
from tests.fakes.epay import FakeEpay
from tests.payments.conftest import EPAY_NOTIFY_URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway(epay):
    fake = FakeEpay(pid="1001", key="TESTKEY123")
    epay.EPAY_GATEWAY = fake.submit_url
    epay.EPAY_QUERY_BEFORE_CREDIT = True
    yield fake
    fake.close()


def _queries(gateway) -> list[dict]:
    return [r.query for r in gateway.requests if r.path == "/api.php"]


def test_a_notice_the_gateway_confirms_pays_the_order(client, gateway, make_product, make_epay_order,
                                                      django_capture_on_commit_callbacks):
    # given
    order = make_epay_order(product=make_product(keys=2))
    notice = gateway.pay(order.order_no, money=f"{order.amount:.2f}")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.confirmed_at is not None) == (PaymentEventOutcome.ACCEPTED, True)
    assert [(q["act"], q["out_trade_no"], q["pid"]) for q in _queries(gateway)] == [
        ("order", order.order_no, "1001")]


def test_with_the_gateway_down_the_notice_waits_and_is_paid_once_it_answers(
        client, gateway, make_product, make_epay_order, django_capture_on_commit_callbacks):
    # given: the gateway booked the trade, then went down
    order = make_epay_order(product=make_product(keys=2))
    notice = gateway.pay(order.order_no, money=f"{order.amount:.2f}")
    gateway.down = True
    # when: the notify arrives
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then: stored and answered, never paid blind, never dropped
    assert response.content == b"success"
    order.refresh_from_db()
    event = PaymentEvent.objects.get()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert (event.outcome, event.apply_attempts, event.confirmed_at) == (PaymentEventOutcome.RECEIVED, 1, None)
    assert event.apply_error.startswith("NoticeUnconfirmed: QUERY_UNANSWERED")
    assert event.apply_after > timezone.now()
    assert not CardKey.objects.filter(order_line__order=order).exists()
    # when: the gateway is back and the retry is due
    gateway.down = False
    PaymentEvent.objects.filter(pk=event.pk).update(apply_after=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert payment_notices_apply() == 1
    # then
    order.refresh_from_db()
    event.refresh_from_db()
    assert (order.status, event.outcome) == (OrderStatus.FULFILLING, PaymentEventOutcome.ACCEPTED)


def test_a_notice_for_a_trade_the_gateway_does_not_know_waits_unpaid(client, gateway, make_product,
                                                                     make_epay_order):
    # given: a correctly signed notice (the key leaked) for a trade nobody paid
    order = make_epay_order(product=make_product(keys=2))
    gateway.pay(order.order_no, money=f"{order.amount:.2f}")
    notice = gateway.notice(order.order_no)
    del gateway.trades[order.order_no]
    # when
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    event = PaymentEvent.objects.get()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert event.outcome == PaymentEventOutcome.RECEIVED
    assert event.apply_error.startswith("NoticeUnconfirmed: QUERY_NOT_PAID")
    assert not CardKey.objects.filter(order_line__order=order).exists()


def test_a_notice_the_gateway_contradicts_is_rejected_and_the_owner_told(client, gateway, make_product,
                                                                         make_epay_order):
    # given: the gateway's record says 0.01 was paid; the signed notice claims the full price
    order = make_epay_order(product=make_product(keys=2, price="30.00"))
    gateway.pay(order.order_no, money="30.00")
    notice = gateway.notice(order.order_no)
    gateway.trades[order.order_no]["money"] = "0.01"
    # when
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    event = PaymentEvent.objects.get()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert (event.outcome, event.reason_code) == (PaymentEventOutcome.REJECTED, "QUERY_MISMATCH")
    alert = OwnerAlert.objects.get(dedupe_key=f"query-mismatch:epay:{event.external_id}")
    assert "merchant key may have leaked" in alert.body
    assert not CardKey.objects.filter(order_line__order=order).exists()


def test_with_query_before_credit_off_the_gateway_is_not_asked(client, gateway, make_product, make_epay_order,
                                                               settings, django_capture_on_commit_callbacks):
    # given
    settings.EPAY_QUERY_BEFORE_CREDIT = False
    order = make_epay_order(product=make_product(keys=2))
    notice = gateway.pay(order.order_no, money=f"{order.amount:.2f}")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        client.post(EPAY_NOTIFY_URL, notice)
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert _queries(gateway) == []
