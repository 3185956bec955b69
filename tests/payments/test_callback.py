"""The paid flow through the sandbox notify endpoint: idempotent, verified, exact."""

from decimal import Decimal

import pytest

from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus, OwnerAlert
from inventory.models import CardKey, CardKeyStatus
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from shop.models import OrderEvent, OrderEventType, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


def _state(order):
    """Everything a notify may change, to assert that a refused one changed nothing."""
    order.refresh_from_db()
    return {
        "status": order.status,
        "payment": Payment.objects.get(order=order).status,
        "keys": list(CardKey.objects.filter(order_line__order=order).values_list("id", flat=True)),
        "deliveries": Delivery.objects.filter(order=order).count(),
        "events": OrderEvent.objects.filter(order=order).count(),
    }


def test_paid_notify_reserves_keys_writes_inbox_and_email_outbox(
    client, make_product, make_unpaid_order, django_capture_on_commit_callbacks, redis_clean
):
    # given
    product = make_product(keys=3)
    order = make_unpaid_order(product=product, quantity=2)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then
    assert response.status_code == 200
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert order.paid_at is not None
    keys = CardKey.objects.filter(order_line__order=order).order_by("id")
    assert [k.status for k in keys] == [CardKeyStatus.DELIVERED, CardKeyStatus.DELIVERED]
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count() == 1
    deliveries = {d.channel: d for d in Delivery.objects.filter(order=order)}
    assert deliveries[Channel.INBOX].status == DeliveryStatus.SENT
    assert deliveries[Channel.EMAIL].status == DeliveryStatus.PENDING
    assert deliveries[Channel.EMAIL].recipient == "buyer@example.com"
    assert [e.type for e in order.events.order_by("at", "id")] == [
        OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.KEYS_RESERVED, OrderEventType.DELIVERY_SENT,
    ]
    payment = Payment.objects.get(order=order)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.external_id == sandbox_notice(order)["trade_no"]
    # the email job was enqueued after commit, under its deterministic id
    assert len(callbacks) == 1
    email_delivery = deliveries[Channel.EMAIL]
    assert email_delivery.batch_job_id.startswith(f"deliveries-{email_delivery.pk}-1-")
    assert redis_clean.exists(f"rq:job:{email_delivery.batch_job_id}") == 1


def test_duplicate_notify_gets_same_reply_and_changes_nothing(
    client, make_product, make_unpaid_order, django_capture_on_commit_callbacks
):
    # given
    order = make_unpaid_order(product=make_product(keys=5), quantity=1)
    notice = sandbox_notice(order)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, notice)
    before = _state(order)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(NOTIFY_URL, notice)
    # then
    assert (response.status_code, response.content) == (200, b"success")
    assert _state(order) == before
    assert len(before["keys"]) == 1
    assert callbacks == []
    assert PaymentEvent.objects.filter(external_id=notice["trade_no"]).count() == 1


def test_forged_signature_is_refused_before_the_database(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    before = _state(order)
    forged = sandbox_notice(order, secret="not-the-secret")
    # when
    response = client.post(NOTIFY_URL, forged)
    # then
    assert response.status_code == 400
    assert response.content == b"fail SIGNATURE_INVALID"
    assert _state(order) == before
    assert PaymentEvent.objects.count() == 0


def test_tampered_amount_breaks_the_signature(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    notice = sandbox_notice(order)
    notice["amount"] = "0.01"
    before = _state(order)
    # when
    response = client.post(NOTIFY_URL, notice)
    # then
    assert response.content == b"fail SIGNATURE_INVALID"
    assert _state(order) == before


def test_amount_below_price_is_recorded_rejected_flagged_and_alerted(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=5, price="10.00"))
    before = _state(order)
    notice = sandbox_notice(order, amount="9.99")  # correctly signed, wrong amount
    # when
    response = client.post(NOTIFY_URL, notice)
    repeat = client.post(NOTIFY_URL, notice)
    # then: the notice is acknowledged (it is stored: the gateway retrying it
    # would change nothing) and applied as REJECTED
    assert (response.status_code, response.content) == (200, b"success")
    assert (repeat.status_code, repeat.content) == (200, b"success")
    assert _state(order) == {**before, "events": before["events"] + 1}  # the flag, nothing else
    flag = order.events.get(type=OrderEventType.PAYMENT_REJECTED)
    assert flag.data == {"code": "AMOUNT_MISMATCH", "external_id": notice["trade_no"], "amount": "9.99",
                         "currency": "CNY", "expected": "10.00 CNY"}
    event = PaymentEvent.objects.get(external_id=notice["trade_no"])
    assert (event.outcome, event.reason_code, event.amount) == (
        PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH", Decimal("9.99")
    )
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.subject, alert.occurrences) == (
        AlertKind.PAYMENT_ODD, f"Payment for order {order.order_no} rejected: AMOUNT_MISMATCH", 1
    )


def test_wrong_currency_is_rejected_flagged_and_alerted(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    before = _state(order)
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order, currency="USD"))
    # then
    assert response.content == b"success"
    assert PaymentEvent.objects.get().reason_code == "CURRENCY_MISMATCH"
    assert _state(order) == {**before, "events": before["events"] + 1}
    assert order.events.filter(type=OrderEventType.PAYMENT_REJECTED).count() == 1
    assert OwnerAlert.objects.get().subject == f"Payment for order {order.order_no} rejected: CURRENCY_MISMATCH"


@pytest.mark.parametrize("amount", ["1e1", "10.001", "abc", "-10.00", "NaN", "0.00", " 10.00"])
def test_malformed_amount_is_refused(client, make_product, make_unpaid_order, amount):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    before = _state(order)
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order, amount=amount))
    # then
    assert response.content == b"fail AMOUNT_INVALID"
    assert _state(order) == before
    assert PaymentEvent.objects.count() == 0


def test_unknown_order_is_rejected_and_recorded(client, db):
    # given
    params = {"trade_no": "SBXUNKNOWN", "out_trade_no": "99999999999999", "amount": "10.00",
              "currency": "CNY", "trade_status": "SUCCESS"}
    from django.conf import settings

    from payments.providers.sandbox import sandbox_sign

    params["sign"] = sandbox_sign(params, settings.SANDBOX_SECRET)
    # when
    response = client.post(NOTIFY_URL, params)
    # then
    assert (response.status_code, response.content) == (200, b"success")
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code, event.payment) == (PaymentEventOutcome.REJECTED, "ORDER_UNKNOWN", None)


def test_not_enough_keys_leaves_order_awaiting_stock_with_no_partial_delivery(
    client, make_product, make_unpaid_order, django_capture_on_commit_callbacks
):
    # given
    product = make_product(keys=2)
    order = make_unpaid_order(product=product, quantity=3)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then
    assert response.content == b"success"  # the money is accepted
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_STOCK
    assert CardKey.objects.filter(order_line__order=order).count() == 0
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count() == 2
    assert Delivery.objects.filter(order=order).count() == 0
    assert callbacks == []
    assert list(order.events.order_by("at", "id").values_list("type", flat=True)) == [
        OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.AWAITING_STOCK,
    ]
    assert order.events.get(type=OrderEventType.AWAITING_STOCK).data == {"wanted": 3, "free": 2}


def test_late_payment_for_expired_order_is_accepted(client, make_product, make_unpaid_order,
                                                    django_capture_on_commit_callbacks):
    # given
    order = make_unpaid_order(product=make_product(keys=2))
    type(order).objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert order.events.get(type=OrderEventType.PAID).data["late"] is True


def test_second_payment_under_another_trade_is_recorded_not_delivered_again(
    client, make_product, make_unpaid_order, django_capture_on_commit_callbacks
):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    keys_before = _state(order)["keys"]
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order, trade_no="SBXSECONDPAYMENT"))
    # then
    assert response.content == b"success"
    assert _state(order)["keys"] == keys_before
    assert PaymentEvent.objects.get(external_id="SBXSECONDPAYMENT").outcome == PaymentEventOutcome.EXTRA
    assert order.events.filter(type=OrderEventType.PAYMENT_EXTRA).count() == 1


def test_failure_notice_is_acknowledged_without_paying(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    before = _state(order)
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order, status="CLOSED"))
    # then
    assert response.content == b"success"
    assert _state(order) == before
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.IGNORED


def test_notify_endpoint_refuses_get(client, db):
    assert client.get(NOTIFY_URL).status_code == 405


def test_sandbox_notify_is_404_when_sandbox_disabled(client, settings, make_product, make_unpaid_order):
    # given
    settings.SANDBOX_ENABLED = False
    order = make_unpaid_order(product=make_product(keys=1))
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then
    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
