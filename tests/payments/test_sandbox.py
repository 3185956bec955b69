"""The sandbox gateway: notifies server to server from the worker, and can be
told to misbehave (duplicates, out of order, wrong amount, overpaid, lost)."""

import django_rq
import pytest
from django.core.management import call_command
from django.urls import reverse

from delivery.models import OwnerAlert
from payments.models import Payment, PaymentEvent, PaymentEventOutcome
from payments.providers.sandbox import NotifyMode, sandbox_trade_no
from shop.models import OrderEventType, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway(live_server, settings):
    """The shop served for real, so the worker's notify reaches it over HTTP."""
    settings.SANDBOX_NOTIFY_URL = f"{live_server.url}/payments/sandbox/notify"
    return live_server


def _pay(client, order, mode: str | None):
    data = {} if mode is None else {"mode": mode}
    response = client.post(reverse("payments:sandbox-pay", args=[order.order_no]), data)
    assert response.status_code == 302
    return django_rq.get_queue("default").fetch_job(f"sandbox-notify-{order.order_no}")


def _notices(order):
    return list(PaymentEvent.objects.filter(reference=order.order_no).order_by("id").values_list(
        "external_id", "outcome", "reason_code"))


def test_pay_page_is_labelled_sandbox_and_offers_the_modes(client, make_product, make_unpaid_order, settings):
    # given
    settings.SANDBOX_NOTIFY_MODE = NotifyMode.DUPLICATE
    order = make_unpaid_order(product=make_product(keys=1))
    # when
    page = client.get(reverse("payments:sandbox-pay", args=[order.order_no])).content.decode()
    # then
    assert "SANDBOX — test gateway, no real money moves" in page
    for value in NotifyMode.VALUES:
        assert f'<option value="{value}"' in page
    assert '<option value="duplicate" selected>' in page


def test_pay_page_is_404_when_the_sandbox_is_off(client, make_product, make_unpaid_order, settings):
    # given
    order = make_unpaid_order(product=make_product(keys=1))
    settings.SANDBOX_ENABLED = False
    # when / then
    assert client.get(reverse("payments:sandbox-pay", args=[order.order_no])).status_code == 404
    assert client.post(reverse("payments:sandbox-pay", args=[order.order_no])).status_code == 404


def test_normal_mode_is_the_default_one_notify(client, gateway, make_product, make_unpaid_order, run_worker):
    # given
    order = make_unpaid_order(product=make_product(keys=2))
    # when
    job = _pay(client, order, None)
    run_worker()
    # then
    job.refresh()
    assert (job.args, job.get_status(), job.return_value()) == ((order.order_no, "normal"), "finished", ["success"])
    order.refresh_from_db()
    assert order.status in (OrderStatus.FULFILLING, OrderStatus.DELIVERED)
    assert _notices(order) == [(sandbox_trade_no(order.order_no), PaymentEventOutcome.ACCEPTED, "")]


def test_duplicate_mode_delivers_once(client, gateway, make_product, make_unpaid_order, run_worker):
    # given
    order = make_unpaid_order(product=make_product(keys=3))
    # when
    job = _pay(client, order, NotifyMode.DUPLICATE)
    run_worker()
    # then
    job.refresh()
    assert job.return_value() == ["success", "success"]
    assert _notices(order) == [(sandbox_trade_no(order.order_no), PaymentEventOutcome.ACCEPTED, "")]
    assert order.lines.get().card_keys.count() == 1


def test_out_of_order_mode_keeps_the_order_paid(client, gateway, make_product, make_unpaid_order, run_worker):
    # given
    order = make_unpaid_order(product=make_product(keys=3))
    # when: the success, then a stale "waiting for payment" report
    job = _pay(client, order, NotifyMode.OUT_OF_ORDER)
    run_worker()
    # then
    job.refresh()
    assert job.return_value() == ["success", "success"]
    order.refresh_from_db()
    assert order.status in (OrderStatus.FULFILLING, OrderStatus.DELIVERED)
    trade = sandbox_trade_no(order.order_no)
    assert _notices(order) == [
        (trade, PaymentEventOutcome.ACCEPTED, ""), (f"{trade}#WAIT_PAY", PaymentEventOutcome.IGNORED, ""),
    ]


def test_wrong_amount_mode_is_acknowledged_rejected_and_alerted(client, gateway, make_product, make_unpaid_order,
                                                                run_worker):
    # given
    order = make_unpaid_order(product=make_product(keys=3, price="10.00"))
    # when
    job = _pay(client, order, NotifyMode.WRONG_AMOUNT)
    run_worker()
    # then: the shop stored the notice (so the gateway stops) and refused 9.99
    job.refresh()
    assert job.get_status() == "finished"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert _notices(order) == [(sandbox_trade_no(order.order_no), PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH")]
    assert order.events.get(type=OrderEventType.PAYMENT_REJECTED).data["amount"] == "9.99"
    assert OwnerAlert.objects.count() == 1


def test_overpay_mode_is_accepted_and_flagged(client, gateway, make_product, make_unpaid_order, run_worker):
    # given
    order = make_unpaid_order(product=make_product(keys=3, price="10.00"))
    # when
    _pay(client, order, NotifyMode.OVERPAY)
    run_worker()
    # then
    order.refresh_from_db()
    assert order.status in (OrderStatus.FULFILLING, OrderStatus.DELIVERED)
    assert order.events.get(type=OrderEventType.PAYMENT_ODD).data["amount"] == "11.00"


def test_lost_mode_sends_nothing_and_reconciliation_finds_the_payment(client, make_product, make_unpaid_order,
                                                                      run_worker, capsys):
    # given: paid at the gateway, the notify never sent
    order = make_unpaid_order(product=make_product(keys=3))
    job = _pay(client, order, NotifyMode.LOST)
    run_worker()
    order.refresh_from_db()
    assert (job, order.status, PaymentEvent.objects.count()) == (None, OrderStatus.PENDING_PAYMENT, 0)
    # when
    call_command("payments_reconcile", "--min-age", "0")
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    event = PaymentEvent.objects.get()
    assert (event.external_id, event.outcome, event.verification) == (
        sandbox_trade_no(order.order_no), PaymentEventOutcome.ACCEPTED, "sandbox gateway query"
    )
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "checked 1, completed 1, refused 0, not paid or no answer 0", f"completed {order.order_no}",
    ]
    assert Payment.objects.get(order=order).external_id == sandbox_trade_no(order.order_no)


def test_unknown_mode_falls_back_to_normal(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=2))
    # when
    job = _pay(client, order, "explode")
    # then
    assert job.args == (order.order_no, "normal")
