"""Late and odd payments: never silently dropped, never delivered twice."""

from decimal import Decimal

import pytest
from django.utils import timezone

from delivery.models import AlertKind, Delivery, OwnerAlert
from inventory.models import CardKey
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from shop.models import Order, OrderEventType, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


def test_amount_above_the_price_is_accepted_flagged_and_alerted(client, make_product, make_unpaid_order,
                                                                django_capture_on_commit_callbacks):
    # given
    order = make_unpaid_order(product=make_product(keys=2, price="10.00"))
    notice = sandbox_notice(order, amount="10.50")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(NOTIFY_URL, notice)
    # then
    assert (response.status_code, response.content) == (200, b"success")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert list(order.events.order_by("at", "id").values_list("type", flat=True)) == [
        OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.PAYMENT_ODD, OrderEventType.KEYS_RESERVED,
        OrderEventType.DELIVERY_SENT,
    ]
    assert order.events.get(type=OrderEventType.PAYMENT_ODD).data == {
        "reason": "OVERPAID", "expected": "10.00", "amount": "10.50", "currency": "CNY",
        "external_id": notice["trade_no"],
    }
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code, event.amount) == (PaymentEventOutcome.ACCEPTED, "OVERPAID",
                                                                Decimal("10.50"))
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.subject) == (
        AlertKind.PAYMENT_ODD, f"Order {order.order_no} was overpaid: 10.50 for 10.00 CNY"
    )


def _refunded(order: Order) -> Order:
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED, paid_at=timezone.now())
    Payment.objects.filter(order=order).update(status=PaymentStatus.REFUNDED, external_id="SBXFIRSTPAYMENT")
    order.refresh_from_db()
    return order


def test_payment_for_a_refunded_order_is_recorded_flagged_and_alerted(client, make_product, make_unpaid_order,
                                                                      django_capture_on_commit_callbacks):
    # given: the order was refunded; the buyer pays again
    product = make_product(keys=2)
    order = _refunded(make_unpaid_order(product=product))
    notice = sandbox_notice(order, trade_no="SBXPAIDAGAIN")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(NOTIFY_URL, notice)
        repeat = client.post(NOTIFY_URL, notice)
    # then: the money is acknowledged (the gateway stops), on record and raised; nothing delivered
    assert (response.status_code, response.content) == (200, b"success")
    assert repeat.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert CardKey.objects.filter(order_line__order=order).count() == 0
    assert Delivery.objects.filter(order=order).count() == 0
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code, event.payment.order_id) == (
        PaymentEventOutcome.EXTRA, "ORDER_REFUNDED", order.pk
    )
    flag = order.events.get(type=OrderEventType.PAYMENT_ODD)
    assert flag.data == {"reason": "ORDER_REFUNDED", "external_id": "SBXPAIDAGAIN", "amount": "10.00",
                         "currency": "CNY"}
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.subject, alert.occurrences) == (
        AlertKind.PAYMENT_ODD, f"Extra payment for order {order.order_no} (ORDER_REFUNDED): refund due", 1
    )


def test_second_payment_for_a_delivered_order_is_alerted(client, make_product, make_unpaid_order,
                                                         django_capture_on_commit_callbacks):
    # given
    order = make_unpaid_order(product=make_product(keys=3))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order, trade_no="SBXSECOND"))
    # then
    assert response.content == b"success"
    assert CardKey.objects.filter(order_line__order=order).count() == 1
    assert PaymentEvent.objects.get(external_id="SBXSECOND").reason_code == "ALREADY_PAID"
    assert OwnerAlert.objects.get().subject == f"Extra payment for order {order.order_no} (ALREADY_PAID): refund due"


def test_late_payment_for_an_expired_order_short_of_stock_awaits_stock(client, make_product, make_unpaid_order,
                                                                       django_capture_on_commit_callbacks):
    # given: expired, and its keys were sold to others since
    product = make_product(keys=1)
    order = make_unpaid_order(product=product, quantity=2)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_STOCK
    assert order.events.get(type=OrderEventType.PAID).data["late"] is True
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED


def test_the_same_transaction_under_another_notice_id_is_applied_once(make_product, make_unpaid_order,
                                                                      django_capture_on_commit_callbacks):
    # given: a payment already applied from one notice
    from payments.providers.base import CallbackNotice
    from payments.services import payment_callback_handle

    order = make_unpaid_order(product=make_product(keys=3))

    def notice(external_id: str) -> CallbackNotice:
        return CallbackNotice(external_id=external_id, transaction_id="pi_1", reference=order.order_no,
                              amount=Decimal("10.00"), currency="CNY", succeeded=True)

    with django_capture_on_commit_callbacks(execute=True):
        first = payment_callback_handle(provider_id="sandbox", notice=notice("evt_1"))
    # when: a second notice reports the same transaction
    second = payment_callback_handle(provider_id="sandbox", notice=notice("evt_2"))
    # then
    assert (first.accepted, second.accepted, second.code) == (True, True, "ALREADY_APPLIED")
    assert CardKey.objects.filter(order_line__order=order).count() == 1
    assert not order.events.filter(type=OrderEventType.PAYMENT_EXTRA).exists()
    assert OwnerAlert.objects.count() == 0
