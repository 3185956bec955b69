"""补单: the owner completes an unpaid order against the provider's trade number."""

import pytest
from django.contrib.admin.models import LogEntry

from delivery.models import OwnerAlert
from inventory.models import CardKey
from payments.models import PaymentEvent, PaymentEventOutcome
from payments.services.manual import (
    ManualCompletionRefused,
    ManualCompletionUnverified,
    payment_manual_complete,
)
from shop.models import Order, OrderEvent, OrderEventType, OrderStatus
from tests.fakes.epay import FakeEpay
from tests.payments.conftest import EPAY_NOTIFY_URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway(epay):
    fake = FakeEpay(pid="1001", key="TESTKEY123")
    epay.EPAY_GATEWAY = fake.submit_url
    yield fake
    fake.close()


def _state(order):
    order.refresh_from_db()
    return (order.status, PaymentEvent.objects.count(), CardKey.objects.filter(order_line__order=order).count(),
            OrderEvent.objects.filter(order=order).count())


@pytest.mark.parametrize("status", [OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED])
def test_a_trade_the_provider_confirms_completes_the_order_through_the_paid_path(
        gateway, make_product, make_epay_order, status, django_capture_on_commit_callbacks):
    # given: paid at the gateway, the notify lost; the order may have expired meanwhile
    order = make_epay_order(product=make_product(keys=2))
    Order.objects.filter(pk=order.pk).update(status=status)
    gateway.pay(order.order_no, money=f"{order.amount:.2f}", trade_no="2026120412345")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        done = payment_manual_complete(order_id=order.pk, method_id="epay", trade_no=" 2026120412345 ",
                                       actor="staff:owner", reason="buyer sent the receipt")
    # then
    assert (done.verified, done.accepted) == (True, True)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    event = PaymentEvent.objects.get()
    assert (event.external_id, event.outcome) == ("2026120412345", PaymentEventOutcome.ACCEPTED)
    assert event.verification.startswith("补单 by staff:owner: api.php")
    manual = OrderEvent.objects.get(order=order, type=OrderEventType.MANUAL_COMPLETION)
    assert (manual.actor, manual.data["verified"], manual.data["reason"]) == (
        "staff:owner", True, "buyer sent the receipt")
    assert CardKey.objects.filter(order_line__order=order).count() == 1


def test_the_notify_arriving_after_a_verified_completion_changes_nothing(
        client, gateway, make_product, make_epay_order, django_capture_on_commit_callbacks):
    # given
    order = make_epay_order(product=make_product(keys=3))
    notice = gateway.pay(order.order_no, money=f"{order.amount:.2f}", trade_no="2026120400001")
    with django_capture_on_commit_callbacks(execute=True):
        payment_manual_complete(order_id=order.pk, method_id="epay", trade_no="2026120400001", actor="staff:owner")
    before = _state(order)
    # when
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert response.content == b"success"
    assert _state(order) == before


@pytest.mark.parametrize("trade_no", ["2026999999999", "2026120400001-typo"])
def test_a_trade_the_provider_cannot_confirm_needs_a_second_confirmation(gateway, make_product, make_epay_order,
                                                                        trade_no):
    # given: the gateway knows no such paid trade for this order
    order = make_epay_order(product=make_product(keys=2))
    if trade_no.endswith("typo"):
        gateway.pay(order.order_no, money=f"{order.amount:.2f}", trade_no="2026120400001")
    before = _state(order)
    # when / then: refused until confirmed, with a reason
    with pytest.raises(ManualCompletionUnverified, match="could not confirm"):
        payment_manual_complete(order_id=order.pk, method_id="epay", trade_no=trade_no, actor="staff:owner")
    with pytest.raises(ManualCompletionRefused) as refused:
        payment_manual_complete(order_id=order.pk, method_id="epay", trade_no=trade_no, actor="staff:owner",
                                unverified_ok=True)
    assert refused.value.code == "REASON_REQUIRED"
    assert _state(order) == before


def test_a_confirmed_unverified_completion_pays_is_marked_and_alerts_the_owner(
        gateway, make_product, make_epay_order, django_capture_on_commit_callbacks):
    # given: the gateway is down
    order = make_epay_order(product=make_product(keys=2))
    gateway.down = True
    # when
    with django_capture_on_commit_callbacks(execute=True):
        done = payment_manual_complete(order_id=order.pk, method_id="epay", trade_no="2026120477777",
                                       actor="staff:owner", reason="saw it in the merchant panel",
                                       unverified_ok=True)
    # then
    assert (done.verified, done.accepted) == (False, True)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    event = PaymentEvent.objects.get()
    assert event.verification == "UNVERIFIED 补单 by staff:owner"
    assert event.payload["reason"] == "saw it in the merchant panel"
    manual = OrderEvent.objects.get(order=order, type=OrderEventType.MANUAL_COMPLETION)
    assert manual.data["verified"] is False
    assert manual.data["why_unverified"].startswith("the provider did not answer")
    alert = OwnerAlert.objects.get(dedupe_key=f"manual-unverified:{order.order_no}:2026120477777")
    assert "saw it in the merchant panel" in alert.body


def test_a_paid_order_cannot_be_completed_again(gateway, make_product, make_epay_order,
                                                django_capture_on_commit_callbacks):
    order = make_epay_order(product=make_product(keys=2))
    gateway.pay(order.order_no, money=f"{order.amount:.2f}", trade_no="2026120400002")
    with django_capture_on_commit_callbacks(execute=True):
        payment_manual_complete(order_id=order.pk, method_id="epay", trade_no="2026120400002", actor="staff:owner")
    with pytest.raises(ManualCompletionRefused) as refused:
        payment_manual_complete(order_id=order.pk, method_id="epay", trade_no="2026120400002", actor="staff:owner")
    assert refused.value.code == "ORDER_NOT_UNPAID"


def test_the_admin_page_asks_again_then_completes_and_writes_the_audit_log(
        admin_client, admin_user, gateway, make_product, make_epay_order, django_capture_on_commit_callbacks):
    # given
    order = make_epay_order(product=make_product(keys=2))
    url = f"/admin/shop/order/{order.pk}/complete-payment/"
    change = admin_client.get(f"/admin/shop/order/{order.pk}/change/")
    assert url in change.content.decode()
    # when: a trade the gateway does not know
    first = admin_client.post(url, {"method": "epay", "trade_no": "2026120455555"})
    # then: a second confirmation is asked for
    assert first.status_code == 200
    assert "could not confirm trade 2026120455555" in first.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    # when: confirmed with a reason
    with django_capture_on_commit_callbacks(execute=True):
        second = admin_client.post(url, {"method": "epay", "trade_no": "2026120455555", "confirm_unverified": "on",
                                         "reason": "bank statement"})
    # then
    assert second.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    entry = LogEntry.objects.get(object_id=str(order.pk))
    assert entry.user_id == admin_user.pk
    assert entry.change_message == ("补单 (UNVERIFIED): epay trade 2026120455555; paid; reason: bank statement")
