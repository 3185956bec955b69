"""epusdt (USDT-TRC20): the signature vectors derived from epusdt's Go source,
the create-transaction QR action and its rate guard, the JSON notify, the
check-status query, reconciliation, the manual refund and the probe, against
a fake epusdt on loopback."""

import hashlib
import json
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from delivery.models import Delivery
from inventory.models import CardKey
from payments.methods import provider_get
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from payments.providers.base import ProviderUnreachable, RefundResult
from payments.providers.epusdt import EpusdtTokenMissing, epusdt_sign
from payments.services import PaymentStartFailed, payment_open, payments_reconcile
from shop.models import Order, OrderEvent, OrderStatus
from tests.fakes.epusdt import WALLET, FakeEpusdt, gateway_sign

pytestmark = pytest.mark.django_db

TOKEN = "EPUSDT-TEST-TOKEN"
NOTIFY_URL = "/payments/usdt/notify"
PAID_STATUSES = (OrderStatus.FULFILLING, OrderStatus.DELIVERED)

# The string epusdt signs for this create-transaction body, written by hand
# from src/util/sign/sign.go: the JSON number 12.30 is parsed into a float64
# and printed by strconv.FormatFloat(f, 'f', -1, 64) as "12.3"; the "k=v"
# strings are sorted; the token is appended; MD5, lowercase hex.
CREATE_VECTOR = {
    "order_id": "20240101000001", "amount": 12.30, "notify_url": "https://shop.example.com/payments/usdt/notify",
    "redirect_url": "https://shop.example.com/orders/20240101000001/",
}
CREATE_SIGNED = ("amount=12.3&notify_url=https://shop.example.com/payments/usdt/notify&order_id=20240101000001"
                 "&redirect_url=https://shop.example.com/orders/20240101000001/" + TOKEN)
CREATE_SIGNATURE = "4bc85bdf5ae57462696a42fd59bf5ba9"
# The notify (mq/handle/callback_queue.go signs the OrderNotifyResponse struct
# through a JSON round trip): 100.00 yuan prints as "100", status 2 as "2";
# the signature itself and empty values are left out.
NOTIFY_VECTOR = {
    "trade_id": "202601011767225600001001", "order_id": "20240101000001", "amount": 100.0, "actual_amount": 1.76,
    "token": WALLET, "block_transaction_id": "9f1c2a", "status": 2, "redirect": "",
}
NOTIFY_SIGNED = ("actual_amount=1.76&amount=100&block_transaction_id=9f1c2a&order_id=20240101000001&status=2"
                 f"&token={WALLET}&trade_id=202601011767225600001001" + TOKEN)
NOTIFY_SIGNATURE = "a9e87d6a3db759a3643b19671c3b6898"


@pytest.fixture
def fake(settings):
    """epusdt configured against a fake on loopback (rate 7.00 CNY per USDT).
    Query before credit is off here, as for EPay's fixture: one test turns it on."""
    gateway = FakeEpusdt(token=TOKEN, rate="7.00")
    settings.EPUSDT_GATEWAY = gateway.url
    settings.EPUSDT_TOKEN = TOKEN
    settings.EPUSDT_RATE = None
    settings.EPUSDT_QUERY_BEFORE_CREDIT = False
    settings.SITE_URL = "https://shop.example.com"
    yield gateway
    gateway.close()


@pytest.fixture
def make_usdt_order(make_unpaid_order, make_product, fake):
    def make(*, price: str = "12.30", keys: int = 3, quantity: int = 1, currency: str = "CNY") -> Order:
        order = make_unpaid_order(product=make_product(keys=keys, price=price, currency=currency),
                                  quantity=quantity)
        Payment.objects.filter(order=order).update(provider="usdt")
        return order

    return make


def _start(order):
    """Open the trade at the fake, keeping the action as checkout does."""
    payment = Payment.objects.get(order=order)
    action = provider_get("usdt").start(payment=payment)
    Payment.objects.filter(pk=payment.pk).update(pay_action=action.as_json(), checkout_id=action.checkout_id)
    return action


def _notify(client, body, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(NOTIFY_URL, data=json.dumps(body), content_type="application/json")


def _state(order):
    order.refresh_from_db()
    return {
        "status": order.status,
        "payment": Payment.objects.get(order=order).status,
        "keys": list(CardKey.objects.filter(order_line__order=order).order_by("id").values_list("id", flat=True)),
        "deliveries": Delivery.objects.filter(order=order).count(),
        "events": OrderEvent.objects.filter(order=order).count(),
        "notices": PaymentEvent.objects.count(),
    }


def _keys(order) -> int:
    return CardKey.objects.filter(order_line__order=order).count()


# --- the signature ----------------------------------------------------------------------------------------------

def test_create_signature_matches_the_vector_derived_from_epusdt():
    assert epusdt_sign(CREATE_VECTOR, TOKEN) == CREATE_SIGNATURE
    # the same amount as the shop holds it (a 2-place Decimal) signs the same
    assert epusdt_sign({**CREATE_VECTOR, "amount": Decimal("12.30")}, TOKEN) == CREATE_SIGNATURE
    # the vector is the documented string
    assert hashlib.md5(CREATE_SIGNED.encode()).hexdigest() == CREATE_SIGNATURE


def test_notify_signature_matches_the_vector_derived_from_epusdt():
    assert epusdt_sign(NOTIFY_VECTOR, TOKEN) == NOTIFY_SIGNATURE
    assert epusdt_sign({**NOTIFY_VECTOR, "signature": "anything", "extra": None}, TOKEN) == NOTIFY_SIGNATURE
    assert hashlib.md5(NOTIFY_SIGNED.encode()).hexdigest() == NOTIFY_SIGNATURE
    # the fake signs on its own the same way
    assert gateway_sign(NOTIFY_VECTOR, TOKEN) == NOTIFY_SIGNATURE


def test_sign_refuses_an_empty_token():
    with pytest.raises(EpusdtTokenMissing):
        epusdt_sign(NOTIFY_VECTOR, "")


# --- start --------------------------------------------------------------------------------------------------------

def test_start_opens_a_trade_and_shows_the_wallet_as_a_qr_code(fake, make_usdt_order):
    # given: 12.30 CNY at the gateway's 7.00 CNY/USDT
    order = make_usdt_order(price="12.30")
    # when
    action = _start(order)
    # then: the USDT amount is the gateway's (12.30 / 7.00 = 1.757 → 1.76, epusdt's two places)
    trade = fake.trade(order.order_no)
    assert action.as_json() == {
        "kind": "QR", "qr": WALLET, "address": WALLET, "amount": "1.76", "currency": "USDT",
        "checkout_id": trade["trade_id"], "url": f"{fake.url}/pay/checkout-counter/{trade['trade_id']}",
    }
    sent = fake.requests[-1].json()
    assert set(sent) == {"order_id", "amount", "notify_url", "redirect_url", "signature"}
    assert (sent["order_id"], sent["amount"], sent["notify_url"]) == (
        order.order_no, 12.3, "https://shop.example.com/payments/usdt/notify")
    # no secret rides along to the gateway: the buyer's own session opens the order page
    assert sent["redirect_url"] == f"https://shop.example.com/orders/{order.order_no}/"
    assert sent["signature"] == gateway_sign(sent, TOKEN)
    assert fake.requests[-1].headers["content-type"] == "application/json"


def test_two_trades_of_one_amount_get_amounts_the_watcher_can_tell_apart(fake, make_usdt_order):
    # given: two orders of the same price on one wallet
    first, second = make_usdt_order(price="70.00"), make_usdt_order(price="70.00")
    # when
    amounts = [_start(first).amount, _start(second).amount]
    # then: the gateway raised the second by 0.01 USDT; the buyer is shown exactly that
    assert amounts == ["10.00", "10.01"]


def test_start_within_the_owners_rate_is_allowed(fake, make_usdt_order, settings):
    # given: the gateway prices 100.00 CNY at 14.29 USDT (7.00); the owner's rate is 6.90
    settings.EPUSDT_RATE = Decimal("6.90")
    order = make_usdt_order(price="100.00")
    # when
    action = _start(order)
    # then: 100 / 14.29 = 6.998, within 2% of 6.90
    assert action.amount == "14.29"


def test_a_gateway_rate_far_from_the_owners_refuses_to_start(client, fake, make_usdt_order, settings, caplog):
    # given: the gateway's rate is 7.50 CNY/USDT, the owner's 7.00: the buyer would send 7% less USDT
    settings.EPUSDT_RATE = Decimal("7.00")
    fake.rate = Decimal("7.50")
    order, other = make_usdt_order(price="100.00"), make_usdt_order(price="100.00")
    # when
    with caplog.at_level(logging.WARNING, logger="payments.providers.epusdt"), \
            pytest.raises(ProviderUnreachable) as refused:
        provider_get("usdt").start(payment=Payment.objects.get(order=order))
    # then
    assert refused.value.code == "RATE_OUT_OF_BOUNDS"
    warnings = [r.getMessage() for r in caplog.records if r.name == "payments.providers.epusdt"]
    assert any("7.5019" in message and "owner's rate 7.00" in message for message in warnings)
    assert not any(TOKEN in record.getMessage() for record in caplog.records)
    # when: a buyer asks to pay through the shop
    with pytest.raises(PaymentStartFailed):
        payment_open(order_id=other.pk, method_id="usdt")
    # then: nothing to pay was shown to the buyer (Pay now opened a payment of its own, left unopened)
    payment = Payment.objects.filter(order=other).latest("id")
    assert (payment.pay_action, payment.checkout_id) == ({}, "")
    assert client.get(reverse("payments:pay", args=[payment.reference])).status_code == 404


@pytest.mark.parametrize(("setup", "code"), [
    ({"token": "OTHER-TOKEN"}, "GATEWAY_SIGNATURE_REJECTED"),
    ({"answer_override": {"amount": 1.23}}, "BAD_ANSWER"),
    ({"answer_override": {"order_id": "SOMEONE-ELSE"}}, "BAD_ANSWER"),
    ({"answer_override": {"token": ""}}, "BAD_ANSWER"),
    ({"answer_override": {"actual_amount": 1.23456}}, "BAD_ANSWER"),
    ({"answer_override": {"actual_amount": 0}}, "BAD_ANSWER"),
    ({"down": True}, "GATEWAY_UNREACHABLE"),
])
def test_start_refuses_what_the_gateway_does_not_confirm(fake, make_usdt_order, setup, code):
    # given
    order = make_usdt_order()
    for name, value in setup.items():
        setattr(fake, name, value)
    # when
    with pytest.raises(ProviderUnreachable) as refused:
        _start(order)
    # then
    assert refused.value.code == code
    assert Payment.objects.get(order=order).pay_action == {}


def test_an_order_id_used_before_is_refused(fake, make_usdt_order):
    # given
    order = make_usdt_order()
    _start(order)
    # when
    with pytest.raises(ProviderUnreachable) as refused:
        _start(order)
    # then
    assert refused.value.code == "GATEWAY_ORDER_EXISTS"


def test_start_refuses_a_currency_epusdt_does_not_convert(fake, make_usdt_order):
    order = make_usdt_order(currency="USD")
    with pytest.raises(ProviderUnreachable) as refused:
        _start(order)
    assert refused.value.code == "CURRENCY_UNSUPPORTED"
    assert fake.requests == []


# --- the notify ---------------------------------------------------------------------------------------------------

def test_a_valid_notify_pays_the_order_and_delivers_a_key(client, fake, make_usdt_order,
                                                          django_capture_on_commit_callbacks):
    # given
    order = make_usdt_order(price="12.30")
    _start(order)
    fake.mark_paid(order.order_no)
    body = fake.callback(order.order_no)
    # when
    response = _notify(client, body, django_capture_on_commit_callbacks)
    # then
    assert (response.status_code, response.content, response["Content-Type"]) == (200, b"ok", "text/plain")
    order.refresh_from_db()
    assert order.status in PAID_STATUSES
    trade = fake.trade(order.order_no)
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.external_id) == (PaymentStatus.SUCCEEDED, trade["trade_id"])
    event = PaymentEvent.objects.get()
    assert (event.provider, event.external_id, event.transaction_id, event.outcome, event.amount, event.currency,
            event.verification) == ("usdt", trade["trade_id"], trade["trade_id"], PaymentEventOutcome.ACCEPTED,
                                    Decimal("12.30"), "CNY", "epusdt MD5 signature valid")
    # the evidence, as signed
    assert event.payload == {
        "trade_id": trade["trade_id"], "order_id": order.order_no, "amount": "12.3", "actual_amount": "1.76",
        "token": WALLET, "block_transaction_id": trade["block_transaction_id"], "status": "2",
        "signature": body["signature"],
    }
    assert _keys(order) == 1


@pytest.mark.django_db(transaction=True)
def test_the_gateway_notify_over_http_pays_the_order(live_server, settings, fake, make_usdt_order):
    # given: the shop served for real, so the fake's POST reaches it
    settings.SITE_URL = live_server.url
    order = make_usdt_order(keys=2)
    _start(order)
    # when: the buyer sent the USDT
    reply = fake.pay(order.order_no)
    # then
    assert reply == (200, "ok")
    order.refresh_from_db()
    assert order.status in PAID_STATUSES
    assert _keys(order) == 1
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED]


@pytest.mark.parametrize("tamper", [
    {"signature": "0" * 32},
    {"amount": 0.01},
    {"order_id": "T99999999"},
    {"status": 2, "trade_id": "202601010000000000000999"},
    {"signature": ""},
])
def test_a_forged_or_tampered_notify_is_refused_before_the_database(client, fake, make_usdt_order, tamper):
    # given: a genuine body, changed after signing
    order = make_usdt_order()
    _start(order)
    fake.mark_paid(order.order_no)
    body = {**fake.callback(order.order_no), **tamper}
    before = _state(order)
    # when
    response = client.post(NOTIFY_URL, data=json.dumps(body), content_type="application/json")
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before
    assert PaymentEvent.objects.count() == 0


@pytest.mark.parametrize("body", [
    lambda fake, order: {k: v for k, v in fake.callback(order.order_no).items() if k != "signature"},
    lambda fake, order: {**fake.callback(order.order_no), "signature": gateway_sign(
        fake.callback(order.order_no), "OTHER-TOKEN")},
    lambda fake, order: "not json",
    lambda fake, order: [fake.callback(order.order_no)],
    lambda fake, order: {**fake.callback(order.order_no), "status": True},
])
def test_a_notify_without_a_valid_signature_is_refused(client, fake, make_usdt_order, body):
    # given
    order = make_usdt_order()
    _start(order)
    fake.mark_paid(order.order_no)
    before = _state(order)
    payload = body(fake, order)
    # when
    response = client.post(NOTIFY_URL, data=payload if isinstance(payload, str) else json.dumps(payload),
                           content_type="application/json")
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before


def test_the_signature_is_compared_in_constant_time(client, fake, make_usdt_order, monkeypatch):
    # given
    from payments.providers.epusdt import signing as epusdt_module

    order = make_usdt_order()
    _start(order)
    fake.mark_paid(order.order_no)
    body = fake.callback(order.order_no)
    compared = []
    real = epusdt_module.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(epusdt_module.hmac, "compare_digest", spy)
    # when
    client.post(NOTIFY_URL, data=json.dumps(body), content_type="application/json")
    # then
    assert compared[0] == (body["signature"].encode(), body["signature"].encode())


def test_a_duplicate_notify_is_answered_ok_and_delivers_once(client, fake, make_usdt_order,
                                                            django_capture_on_commit_callbacks):
    # given
    order = make_usdt_order()
    _start(order)
    fake.mark_paid(order.order_no)
    body = fake.callback(order.order_no)
    first = _notify(client, body, django_capture_on_commit_callbacks)
    before = _state(order)
    # when: epusdt retries
    again = _notify(client, body, django_capture_on_commit_callbacks)
    # then
    assert (first.content, again.content) == (b"ok", b"ok")
    assert _state(order) == before
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED]
    assert _keys(order) == 1


def test_a_signed_notify_for_another_amount_is_rejected(client, fake, make_usdt_order,
                                                        django_capture_on_commit_callbacks):
    # given: correctly signed, but 1.00 CNY for a 12.30 order
    order = make_usdt_order(price="12.30")
    _start(order)
    fake.mark_paid(order.order_no)
    # when
    response = _notify(client, fake.callback(order.order_no, amount=1.0), django_capture_on_commit_callbacks)
    # then: acknowledged (a retry would change nothing), recorded, raised; not paid
    assert response.content == b"ok"
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code, event.amount) == (
        PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH", Decimal("1.00"))
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert _keys(order) == 0


@pytest.mark.parametrize("amount", [12.345, -12.3, 0, "12,30", "１２.３", "١٢.٣"])
def test_an_amount_that_is_not_a_two_place_amount_is_refused(client, fake, make_usdt_order, amount):
    # given
    order = make_usdt_order(price="12.30")
    _start(order)
    fake.mark_paid(order.order_no)
    before = _state(order)
    # when
    response = client.post(NOTIFY_URL, data=json.dumps(fake.callback(order.order_no, amount=amount)),
                           content_type="application/json")
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before


def test_a_late_notify_pays_an_expired_order(client, fake, make_usdt_order, django_capture_on_commit_callbacks):
    # given: the order's hold lapsed before the USDT was seen on chain
    order = make_usdt_order()
    _start(order)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    fake.mark_paid(order.order_no)
    # when
    response = _notify(client, fake.callback(order.order_no), django_capture_on_commit_callbacks)
    # then
    assert response.content == b"ok"
    order.refresh_from_db()
    assert order.status in PAID_STATUSES
    assert _keys(order) == 1


@pytest.mark.parametrize("expired_first", [True, False])
def test_an_expiry_report_out_of_order_never_shadows_the_payment(client, fake, make_usdt_order, expired_first,
                                                                 django_capture_on_commit_callbacks):
    # given: the same trade reported expired (status 3) and paid (status 2), in either order
    order = make_usdt_order()
    _start(order)
    trade = fake.mark_paid(order.order_no)
    paid = fake.callback(order.order_no)
    expired = fake.callback(order.order_no, status=3)
    # when
    replies = [_notify(client, body, django_capture_on_commit_callbacks).content
               for body in ((expired, paid) if expired_first else (paid, expired))]
    # then: paid exactly once
    assert replies == [b"ok", b"ok"]
    order.refresh_from_db()
    assert order.status in PAID_STATUSES
    assert _keys(order) == 1
    outcomes = dict(PaymentEvent.objects.values_list("external_id", "outcome"))
    assert outcomes[trade["trade_id"]] == PaymentEventOutcome.ACCEPTED
    assert outcomes[f"{trade['trade_id']}#3"] != PaymentEventOutcome.ACCEPTED
    assert len(outcomes) == 2


# --- query, reconciliation ----------------------------------------------------------------------------------------

def test_query_reports_a_paid_trade(fake, make_usdt_order):
    # given
    order = make_usdt_order(price="12.30")
    _start(order)
    trade = fake.mark_paid(order.order_no)
    payment = Payment.objects.get(order=order)
    # when
    notice = provider_get("usdt").query(payment=payment)
    # then: the status route does not say the amount: the payment's own is reported, and said so
    assert (notice.succeeded, notice.external_id, notice.transaction_id, notice.reference, notice.amount,
            notice.currency) == (True, trade["trade_id"], trade["trade_id"], order.order_no, Decimal("12.30"), "CNY")
    assert notice.verification == "epusdt check-status paid; amount not reported"
    assert fake.requests[-1].path == f"/pay/check-status/{trade['trade_id']}"


@pytest.mark.parametrize("expire", [False, True])
def test_query_of_a_waiting_or_expired_trade_is_none(fake, make_usdt_order, expire):
    # given
    order = make_usdt_order()
    _start(order)
    if expire:
        fake.expire(order.order_no)
    # when / then
    assert provider_get("usdt").query(payment=Payment.objects.get(order=order)) is None


def test_query_of_a_trade_the_gateway_does_not_know_is_none(fake, make_usdt_order):
    order = make_usdt_order()
    Payment.objects.filter(order=order).update(checkout_id="202601019999999999999999")
    assert provider_get("usdt").query(payment=Payment.objects.get(order=order)) is None
    assert fake.requests[-1].path == "/pay/check-status/202601019999999999999999"


def test_query_without_a_trade_asks_nothing(fake, make_usdt_order):
    order = make_usdt_order()
    assert provider_get("usdt").query(payment=Payment.objects.get(order=order)) is None
    assert fake.requests == []


def test_query_when_the_gateway_is_down_or_answers_nonsense_raises(fake, make_usdt_order, monkeypatch):
    # given
    order = make_usdt_order()
    _start(order)
    payment = Payment.objects.get(order=order)
    provider = provider_get("usdt")
    fake.down = True
    # when / then
    with pytest.raises(ProviderUnreachable) as down:
        provider.query(payment=payment)
    assert down.value.code == "GATEWAY_UNREACHABLE"
    # given: up again, but answering about another trade
    fake.down = False
    monkeypatch.setattr(fake, "_check_status", lambda trade_id: fake._envelope(
        200, "success", {"trade_id": "OTHER", "status": 2}))
    with pytest.raises(ProviderUnreachable) as nonsense:
        provider.query(payment=payment)
    assert nonsense.value.code == "BAD_ANSWER"


def test_reconcile_completes_a_trade_paid_without_a_notify(client, fake, make_usdt_order,
                                                           django_capture_on_commit_callbacks):
    # given: paid at the gateway five minutes ago, the notify lost
    order = make_usdt_order()
    _start(order)
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))
    fake.mark_paid(order.order_no)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = payments_reconcile(provider_id="usdt")
    # then
    assert (result.checked, result.completed, result.refused) == (1, [order.order_no], {})
    order.refresh_from_db()
    assert order.status in PAID_STATUSES
    assert _keys(order) == 1
    # and the notify that turns up later is a duplicate
    assert _notify(client, fake.callback(order.order_no), django_capture_on_commit_callbacks).content == b"ok"
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED]
    assert _keys(order) == 1


def test_reconcile_leaves_a_trade_not_yet_paid(fake, make_usdt_order):
    order = make_usdt_order()
    _start(order)
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))
    result = payments_reconcile(provider_id="usdt")
    assert (result.checked, result.completed, result.unanswered) == (1, [], 1)
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT


def test_query_before_credit_pays_once_the_gateway_confirms(client, fake, make_usdt_order, settings,
                                                            django_capture_on_commit_callbacks):
    # given: the method asks check-status before a notice pays (epusdt's default)
    settings.EPUSDT_QUERY_BEFORE_CREDIT = True
    order = make_usdt_order()
    _start(order)
    trade = fake.mark_paid(order.order_no)
    # when
    response = _notify(client, fake.callback(order.order_no), django_capture_on_commit_callbacks)
    # then
    assert response.content == b"ok"
    order.refresh_from_db()
    assert order.status in PAID_STATUSES
    assert fake.requests[-1].path == f"/pay/check-status/{trade['trade_id']}"
    assert PaymentEvent.objects.get().confirmed_at is not None


# --- refund, probe ------------------------------------------------------------------------------------------------

def test_refund_is_manual_with_what_to_send_back(client, fake, make_usdt_order, django_capture_on_commit_callbacks):
    # given: paid 12.30 CNY as 1.76 USDT
    order = make_usdt_order(price="12.30")
    _start(order)
    trade = fake.mark_paid(order.order_no)
    _notify(client, fake.callback(order.order_no), django_capture_on_commit_callbacks)
    payment = Payment.objects.get(order=order)
    requests_before = len(fake.requests)
    # when
    result = provider_get("usdt").refund(payment=payment, amount=payment.amount)
    # then
    assert (result.status, result.external_id) == (RefundResult.MANUAL, "")
    assert result.instructions == (
        "epusdt has no refund API: send 1.76 USDT back by hand to the buyer's address, the sender of block "
        f"transaction {trade['block_transaction_id']} (paid to our wallet {WALLET}); epusdt trade "
        f"{trade['trade_id']}, merchant order {order.order_no}."
    )
    assert len(fake.requests) == requests_before  # nothing asked of the gateway


def test_probe_ok_when_the_gateway_answers_and_accepts_the_token(fake):
    # when
    result = provider_get("usdt").probe()
    # then
    assert (result.ok, result.code) == (True, "OK")
    assert result.server_time is not None
    assert abs((timezone.now() - result.server_time).total_seconds()) < 60
    assert [r.path for r in fake.requests] == ["/pay/check-status/KDPROBE0000000000000",
                                               "/api/v1/order/create-transaction"]
    assert fake.trades == {}  # nothing created


def test_probe_reports_a_wrong_token(fake):
    # given
    fake.token = "THE-GATEWAYS-OWN-TOKEN"
    # when
    result = provider_get("usdt").probe()
    # then
    assert (result.ok, result.code) == (False, "AUTH_FAILED")
    assert result.fix == "EPUSDT_TOKEN must equal the api_auth_token in epusdt's .env."
    assert result.server_time is not None


def test_probe_reports_an_unreachable_gateway(fake):
    # given
    fake.down = True
    # when
    result = provider_get("usdt").probe()
    # then
    assert (result.ok, result.code) == (False, "UNREACHABLE")
    assert "EPUSDT_GATEWAY" in result.fix


def test_probe_reports_a_url_that_is_not_epusdt(fake, settings):
    # given: the gateway URL points below the API
    settings.EPUSDT_GATEWAY = f"{fake.url}/api/v1"
    # when
    result = provider_get("usdt").probe()
    # then
    assert (result.ok, result.code) == (False, "BAD_ANSWER")
    assert "EPUSDT_GATEWAY" in result.fix
