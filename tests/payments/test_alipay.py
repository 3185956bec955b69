"""支付宝开放平台 (RSA2) against a fake gateway on loopback: the sign strings,
当面付 QR, the page/wap form, the notify (forged, other app, duplicate, wrong
amount, late, out of order, refund), query, reconciliation, refund, probe."""

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from delivery.models import Delivery
from inventory.models import CardKey
from payments.methods import provider_get
from payments.models import (
    Payment,
    PaymentEvent,
    PaymentEventOutcome,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.providers.alipay import (
    alipay_response_raw,
    alipay_sign,
    alipay_sign_content,
    alipay_timestamp,
)
from payments.providers.base import NoticeKind, PayActionKind, ProviderUnreachable, RefundFailed, RefundResult
from payments.providers.http import rsa_private_key_load
from payments.services import payment_refund, payments_reconcile
from shop.models import Order, OrderEvent, OrderStatus
from tests.fakes.alipay import FakeAlipay, notify_content, private_pem, request_content, rsa2_valid

pytestmark = pytest.mark.django_db

NOTIFY_URL = "/payments/alipay/notify"
PAID = (OrderStatus.FULFILLING, OrderStatus.DELIVERED)

REQUEST_VECTOR = {
    "app_id": "2014072300007148", "method": "alipay.trade.precreate", "format": "JSON", "charset": "utf-8",
    "sign_type": "RSA2", "timestamp": "2014-07-24 03:07:50", "version": "1.0",
    "notify_url": "https://shop.example.com/payments/alipay/notify",
    "biz_content": '{"out_trade_no":"20150320010101001","total_amount":"88.88","subject":"Iphone6 16G"}',
    "app_auth_token": "", "sign": "ignored",
}
NOTIFY_VECTOR = {
    "trade_no": "2013112011001004330000121536", "out_trade_no": "6823789339978248", "app_id": "2014072300007148",
    "trade_status": "TRADE_SUCCESS", "total_amount": "20.00", "notify_time": "2015-14-27 15:45:58",
    "body": "", "sign_type": "RSA2", "sign": "ignored",
}


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_server():
    gateway = FakeAlipay()
    yield gateway
    gateway.close()


@pytest.fixture
def fake(fake_server):
    """The fake gateway, with nothing booked (one server for the module: stopping one takes half a second)."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def alipay(settings, fake):
    """Alipay configured against the fake: its app key, Alipay's public key as
    the console shows it (bare base64), 当面付."""
    settings.ALIPAY_APP_ID = fake.app_id
    settings.ALIPAY_PRIVATE_KEY = fake.app_private_pem
    settings.ALIPAY_PUBLIC_KEY = fake.alipay_public_base64
    settings.ALIPAY_CHANNEL = "f2f"
    settings.ALIPAY_GATEWAY = fake.gateway_url
    settings.ALIPAY_QUERY_BEFORE_CREDIT = False
    settings.SITE_URL = "https://shop.example.com"
    return settings


@pytest.fixture
def make_alipay_order(make_unpaid_order, alipay):
    def make(*, product, quantity: int = 1) -> Order:
        order = make_unpaid_order(product=product, quantity=quantity)
        Payment.objects.filter(order=order).update(provider="alipay")
        return order

    return make


@pytest.fixture
def shop_url(live_server, alipay):
    """The shop served for real, so the fake's notify reaches it over HTTP."""
    alipay.SITE_URL = live_server.url
    return live_server.url


def _notify(client, params: dict):
    """Post ``params`` as Alipay does: a form-encoded body."""
    return client.post(NOTIFY_URL, urllib.parse.urlencode(params), content_type="application/x-www-form-urlencoded")


def _paid_at_fake(fake, order, **book) -> dict:
    """The buyer paid the order at the fake (no notify sent); returns the trade."""
    return fake.book(order.order_no, total_amount=book.pop("total_amount", f"{order.amount:.2f}"), **book)


def _keys(order) -> list[int]:
    return list(CardKey.objects.filter(order_line__order=order).values_list("id", flat=True))


def _state(order):
    order.refresh_from_db()
    return {
        "status": order.status,
        "payment": Payment.objects.get(order=order).status,
        "keys": _keys(order),
        "deliveries": Delivery.objects.filter(order=order).count(),
        "events": OrderEvent.objects.filter(order=order).count(),
        "notices": PaymentEvent.objects.count(),
    }


def _biz(call: dict) -> dict:
    return json.loads(call["biz_content"])


# --- the sign strings -----------------------------------------------------------------

def test_request_sign_string_leaves_out_sign_and_empty_values():
    assert alipay_sign_content(REQUEST_VECTOR) == (
        "app_id=2014072300007148"
        '&biz_content={"out_trade_no":"20150320010101001","total_amount":"88.88","subject":"Iphone6 16G"}'
        "&charset=utf-8&format=JSON&method=alipay.trade.precreate"
        "&notify_url=https://shop.example.com/payments/alipay/notify"
        "&sign_type=RSA2&timestamp=2014-07-24 03:07:50&version=1.0"
    )


def test_notify_sign_string_leaves_out_sign_and_sign_type_only():
    assert alipay_sign_content(NOTIFY_VECTOR, unsigned=("sign", "sign_type"), skip_empty=False) == (
        "app_id=2014072300007148&body=&notify_time=2015-14-27 15:45:58&out_trade_no=6823789339978248"
        "&total_amount=20.00&trade_no=2013112011001004330000121536&trade_status=TRADE_SUCCESS"
    )


def test_the_request_sign_verifies_with_the_app_public_key(fake):
    # given
    key = rsa_private_key_load(fake.app_private_pem)
    # when
    sign = alipay_sign(alipay_sign_content(REQUEST_VECTOR), key)
    # then: the fake's own verifier, over the string the document defines
    assert rsa2_valid(request_content({**REQUEST_VECTOR, "sign": sign}), sign, fake.app_public_key)
    assert not rsa2_valid(request_content({**REQUEST_VECTOR, "version": "1.1"}), sign, fake.app_public_key)
    assert not rsa2_valid(request_content(REQUEST_VECTOR), sign, fake.alipay_key.public_key())


def test_the_timestamp_is_beijing_time():
    moment = datetime(2024, 1, 1, 16, 30, 5, tzinfo=UTC)
    assert alipay_timestamp(moment) == "2024-01-02 00:30:05"


def test_the_answer_object_is_cut_from_the_raw_text_exactly():
    # given: spacing, escapes, non-ASCII and a decoy string naming the key
    inner = '{"code":"40004", "sub_msg":"交易不存在","note":"\\u4ea4 \\"alipay_trade_query_response\\":{}"}'
    text = '{"decoy":"alipay_trade_query_response","alipay_trade_query_response": ' + inner + ' ,"sign":"xyz"}'
    # when / then
    assert alipay_response_raw(text, "alipay_trade_query_response") == inner
    assert alipay_response_raw(text, "error_response") is None
    twice = '{"alipay_trade_query_response":{"a":1},"alipay_trade_query_response":{"a":2},"sign":"x"}'
    assert alipay_response_raw(twice, "alipay_trade_query_response") is None
    assert alipay_response_raw('{"alipay_trade_query_response":"text","sign":"x"}',
                               "alipay_trade_query_response") is None
    assert alipay_response_raw('{"alipay_trade_query_response":{}} trailing', "alipay_trade_query_response") is None


# --- start ------------------------------------------------------------------------------

def test_start_f2f_precreates_and_returns_the_qr(fake, make_product, make_alipay_order):
    # given
    order = make_alipay_order(product=make_product(keys=1, price="12.34", name="VIP 30d"))
    payment = Payment.objects.get(order=order)
    # when
    action = provider_get("alipay").start(payment=payment)
    # then
    assert (action.kind, action.qr, action.app_url) == (PayActionKind.QR, "https://qr.alipay.com/bax01",
                                                        "https://qr.alipay.com/bax01")
    [call] = fake.calls
    assert (call["method"], call["app_id"], call["sign_type"], call["charset"], call["format"], call["version"]) == (
        "alipay.trade.precreate", fake.app_id, "RSA2", "utf-8", "JSON", "1.0")
    assert _biz(call) == {"out_trade_no": order.order_no, "total_amount": "12.34", "subject": "VIP 30d"}
    assert call["notify_url"] == "https://shop.example.com/payments/alipay/notify"
    assert "return_url" not in call
    sent = datetime.strptime(call["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    assert abs(sent - timezone.now()) < timedelta(minutes=1)
    assert fake.orders[order.order_no]["total_amount"] == "12.34"


@pytest.mark.parametrize("channel, method, product_code", [
    ("page", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    ("wap", "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
])
def test_start_page_or_wap_returns_a_signed_form(fake, alipay, make_product, make_alipay_order, channel, method,
                                                 product_code):
    # given
    alipay.ALIPAY_CHANNEL = channel
    order = make_alipay_order(product=make_product(keys=1, price="10.00", name="VIP 30d"))
    # when
    action = provider_get("alipay").start(payment=Payment.objects.get(order=order))
    # then: nothing asked of the gateway; a form the buyer's browser posts to it
    assert fake.requests == []
    assert (action.kind, action.url) == (PayActionKind.FORM, f"{fake.gateway_url}?charset=utf-8")
    fields = action.fields
    assert set(fields) == {"app_id", "method", "format", "charset", "sign_type", "timestamp", "version",
                           "notify_url", "return_url", "biz_content", "sign"}
    assert (fields["method"], fields["app_id"], fields["sign_type"]) == (method, fake.app_id, "RSA2")
    assert json.loads(fields["biz_content"]) == {"out_trade_no": order.order_no, "total_amount": "10.00",
                                                 "subject": "VIP 30d", "product_code": product_code}
    assert rsa2_valid(request_content(fields), fields["sign"], fake.app_public_key)
    # no secret in the return URL: the buyer's own session opens the order page
    assert fields["return_url"] == f"https://shop.example.com/orders/{order.order_no}/"
    assert fields["notify_url"] == "https://shop.example.com/payments/alipay/notify"


def test_the_form_opens_the_fake_cashier(fake, alipay, make_product, make_alipay_order):
    # given
    alipay.ALIPAY_CHANNEL = "page"
    order = make_alipay_order(product=make_product(keys=1, price="10.00"))
    action = provider_get("alipay").start(payment=Payment.objects.get(order=order))
    # when: the browser posts the form
    status, page = fake.post(action.url, form=action.fields)
    # then: the gateway accepted the sign and shows the cashier
    assert status == 200
    assert "id='pay'" in page and "<p id='amount'>10.00</p>" in page


def test_precreate_answer_with_a_bad_sign_is_unreachable(fake, make_product, make_alipay_order):
    # given: the answer is signed with a key that is not Alipay's
    fake.wrong_response_key = True
    order = make_alipay_order(product=make_product(keys=1))
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("alipay").start(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == "SIGNATURE_INVALID"
    assert len(fake.calls) == 1


def test_precreate_refused_for_a_wrong_app_key_is_unreachable(fake, alipay, make_product, make_alipay_order):
    # given: the shop signs with a key whose public half is not in the console
    alipay.ALIPAY_PRIVATE_KEY = private_pem(fake.other_key)
    order = make_alipay_order(product=make_product(keys=1))
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("alipay").start(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == "isv.invalid-signature"
    assert fake.orders == {}


def test_a_key_that_does_not_load_crashes_nothing(client, fake, alipay, make_product, make_alipay_order):
    # given
    alipay.ALIPAY_PRIVATE_KEY = "not a key"
    alipay.ALIPAY_PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----"
    order = make_alipay_order(product=make_product(keys=1))
    payment = Payment.objects.get(order=order)
    provider = provider_get("alipay")  # still enabled: every setting is there
    # when / then
    with pytest.raises(ProviderUnreachable) as started:
        provider.start(payment=payment)
    with pytest.raises(ProviderUnreachable) as queried:
        provider.query(payment=payment)
    probe = provider.probe()
    _paid_at_fake(fake, order)
    before = _state(order)
    response = _notify(client, fake.notice(order.order_no))
    assert (started.value.code, queried.value.code) == ("KEY_INVALID", "KEY_INVALID")
    assert (probe.ok, probe.code) == (False, "AUTH_FAILED")
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before
    assert fake.calls == []


# --- the notify -------------------------------------------------------------------------

def test_a_valid_notify_pays_the_order(client, fake, make_product, make_alipay_order,
                                       django_capture_on_commit_callbacks):
    # given
    order = make_alipay_order(product=make_product(keys=3, price="10.00"))
    trade = _paid_at_fake(fake, order)
    notice = fake.notice(order.order_no)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, notice)
    # then
    assert (response.status_code, response.content, response["Content-Type"]) == (200, b"success", "text/plain")
    order.refresh_from_db()
    assert order.status in PAID
    assert len(_keys(order)) == 1
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.external_id) == (PaymentStatus.SUCCEEDED, trade["trade_no"])
    event = PaymentEvent.objects.get()
    assert (event.provider, event.external_id, event.reference, event.outcome, event.amount, event.currency,
            event.kind, event.verification) == (
        "alipay", trade["trade_no"], order.order_no, PaymentEventOutcome.ACCEPTED, Decimal("10.00"), "CNY",
        NoticeKind.PAYMENT, "RSA2 sign valid")
    assert event.payload == notice


@pytest.mark.parametrize("tamper", ["forged", "amount", "no_sign", "rsa1", "no_sign_type", "garbage"])
def test_a_forged_or_tampered_notify_is_refused_before_the_database(client, fake, make_product, make_alipay_order,
                                                                     tamper):
    # given
    order = make_alipay_order(product=make_product(keys=3))
    _paid_at_fake(fake, order)
    notice = {
        "forged": lambda: fake.notice(order.order_no, key=fake.other_key),
        "amount": lambda: {**fake.notice(order.order_no), "total_amount": "100.00"},
        "no_sign": lambda: {**fake.notice(order.order_no), "sign": ""},
        "rsa1": lambda: {**fake.notice(order.order_no), "sign_type": "RSA"},
        "no_sign_type": lambda: {k: v for k, v in fake.notice(order.order_no).items() if k != "sign_type"},
        "garbage": lambda: {**fake.notice(order.order_no), "sign": "!!not base64!!"},
    }[tamper]()
    before = _state(order)
    # when
    response = _notify(client, notice)
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before
    assert PaymentEvent.objects.count() == 0


def test_a_notify_for_another_app_is_refused(client, fake, make_product, make_alipay_order):
    # given: signed by Alipay, but for another app of the same account
    order = make_alipay_order(product=make_product(keys=3))
    _paid_at_fake(fake, order)
    before = _state(order)
    # when
    response = _notify(client, fake.notice(order.order_no, app_id="2021000000009999"))
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before


def test_duplicates_and_trade_finished_pay_once(client, fake, make_product, make_alipay_order,
                                               django_capture_on_commit_callbacks):
    # given
    order = make_alipay_order(product=make_product(keys=3))
    trade = _paid_at_fake(fake, order)
    notice = fake.notice(order.order_no)
    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(client, notice).content == b"success"
    keys = _keys(order)
    # when: Alipay retries, then reports the trade finished (no refund possible any more)
    with django_capture_on_commit_callbacks(execute=True):
        again = _notify(client, notice)
        finished = _notify(client, fake.notice(order.order_no, trade_status="TRADE_FINISHED"))
    # then
    assert (again.status_code, again.content) == (200, b"success")
    assert (finished.status_code, finished.content) == (200, b"success")
    assert list(PaymentEvent.objects.values_list("external_id", "outcome")) == [
        (trade["trade_no"], PaymentEventOutcome.ACCEPTED)]
    assert _keys(order) == keys and len(keys) == 1


def test_a_wrong_amount_is_rejected_and_nothing_delivered(client, fake, make_product, make_alipay_order):
    # given: the buyer paid 9.00 of 10.00
    order = make_alipay_order(product=make_product(keys=3, price="10.00"))
    _paid_at_fake(fake, order, total_amount="9.00")
    # when
    response = _notify(client, fake.notice(order.order_no))
    # then: acknowledged (retrying changes nothing), recorded as rejected
    assert response.content == b"success"
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code, event.amount) == (
        PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH", Decimal("9.00"))
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert Payment.objects.get(order=order).status == PaymentStatus.CREATED
    assert _keys(order) == []


def test_a_late_notify_pays_the_expired_order(client, fake, make_product, make_alipay_order,
                                              django_capture_on_commit_callbacks):
    # given: the order expired before the buyer's payment was reported
    order = make_alipay_order(product=make_product(keys=3))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    _paid_at_fake(fake, order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, fake.notice(order.order_no))
    # then: the money is taken, so the keys go out
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status in PAID
    assert len(_keys(order)) == 1
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.ACCEPTED


@pytest.mark.parametrize("waiting_first", [True, False])
def test_wait_buyer_pay_in_either_order_pays_once(client, fake, make_product, make_alipay_order, waiting_first,
                                                  django_capture_on_commit_callbacks):
    # given
    order = make_alipay_order(product=make_product(keys=3))
    trade = _paid_at_fake(fake, order)
    waiting = fake.notice(order.order_no, trade_status="WAIT_BUYER_PAY", gmt_payment=None)
    paid = fake.notice(order.order_no)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        replies = [_notify(client, n).content for n in ([waiting, paid] if waiting_first else [paid, waiting])]
    # then
    assert replies == [b"success", b"success"]
    order.refresh_from_db()
    assert order.status in PAID
    assert len(_keys(order)) == 1
    assert sorted(PaymentEvent.objects.values_list("external_id", "outcome", "succeeded")) == [
        (trade["trade_no"], PaymentEventOutcome.ACCEPTED, True),
        (f"{trade['trade_no']}#WAIT_BUYER_PAY", PaymentEventOutcome.IGNORED, False),
    ]


def test_a_refund_notify_before_any_payment_delivers_nothing(client, fake, make_product, make_alipay_order):
    # given: the trade was paid and refunded at Alipay; only the refund's notify arrives
    order = make_alipay_order(product=make_product(keys=3, price="10.00"))
    trade = _paid_at_fake(fake, order)
    # when
    response = _notify(client, fake.refund_notice(order.order_no, out_biz_no="RF001"))
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert _keys(order) == []
    event = PaymentEvent.objects.get()
    assert (event.kind, event.external_id, event.transaction_id, event.amount, event.outcome) == (
        NoticeKind.REFUND, f"{trade['trade_no']}#refund#RF001", trade["trade_no"], Decimal("10.00"),
        PaymentEventOutcome.REFUNDED)


def test_a_notify_with_an_empty_parameter_is_verified_with_it(client, fake, make_product, make_alipay_order,
                                                               django_capture_on_commit_callbacks):
    # given: Alipay signs every parameter it sends, empty ones included
    order = make_alipay_order(product=make_product(keys=2))
    _paid_at_fake(fake, order)
    notice = fake.notice(order.order_no, passback_params="", body="")
    assert "&body=&" in notify_content(notice)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, notice)
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status in PAID


def test_a_partial_refund_notify_after_delivery_is_raised(client, fake, make_product, make_alipay_order,
                                                          django_capture_on_commit_callbacks):
    # given: paid and delivered
    order = make_alipay_order(product=make_product(keys=2, price="10.00"))
    trade = _paid_at_fake(fake, order)
    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(client, fake.notice(order.order_no)).content == b"success"
    keys = _keys(order)
    # when: 4.00 refunded in the merchant console
    response = _notify(client, fake.refund_notice(order.order_no, refund_fee="4.00", out_biz_no="RF-CONSOLE-1"))
    # then: recorded for a person to decide; the keys stay with the order
    assert response.content == b"success"
    event = PaymentEvent.objects.get(kind=NoticeKind.REFUND)
    assert (event.external_id, event.amount, event.outcome, event.reason_code) == (
        f"{trade['trade_no']}#refund#RF-CONSOLE-1", Decimal("4.00"), PaymentEventOutcome.REFUNDED, "PARTIAL_REFUND")
    assert _keys(order) == keys
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED


def test_a_refund_without_out_biz_no_is_keyed_on_its_time(client, fake, make_product, make_alipay_order):
    # given: a refund made in the merchant console (no request number of ours)
    order = make_alipay_order(product=make_product(keys=3))
    trade = _paid_at_fake(fake, order)
    notice = fake.notice(order.order_no, refund_fee="10.00", gmt_refund="2026-01-02 09:00:00.123",
                         trade_status="TRADE_CLOSED")
    # when
    response = _notify(client, notice)
    # then
    assert response.content == b"success"
    event = PaymentEvent.objects.get()
    assert (event.kind, event.external_id) == (NoticeKind.REFUND, f"{trade['trade_no']}#refund#2026-01-02 09:00:00.123")


# --- over HTTP, as in production ---------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_buyer_scans_and_alipay_notifies_the_shop(fake, shop_url, make_product, make_alipay_order):
    # given: the QR code is shown
    order = make_alipay_order(product=make_product(keys=2, price="10.00"))
    action = provider_get("alipay").start(payment=Payment.objects.get(order=order))
    assert action.qr == "https://qr.alipay.com/bax01"
    # when: the buyer scans and pays; Alipay posts the notify to the URL of the precreate
    reply = fake.pay(order.order_no)
    # then
    assert reply == (200, "success")
    order.refresh_from_db()
    assert order.status in PAID
    assert len(_keys(order)) == 1
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.ACCEPTED


@pytest.mark.django_db(transaction=True)
def test_the_cashier_pays_notifies_and_returns_the_buyer(fake, shop_url, alipay, make_product, make_alipay_order):
    # given: 电脑网站支付, the buyer's browser posted the form
    alipay.ALIPAY_CHANNEL = "page"
    order = make_alipay_order(product=make_product(keys=2, price="10.00"))
    action = provider_get("alipay").start(payment=Payment.objects.get(order=order))
    status, page = fake.post(action.url, form=action.fields)
    assert status == 200 and "id='pay'" in page
    # when: the buyer presses Pay (the redirect is not followed: the shop's order page is the browser's)
    pay = urllib.request.Request(f"{fake.url}/pay", data=urllib.parse.urlencode(
        {"out_trade_no": order.order_no}).encode(), method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirected:
        opener.open(pay, timeout=15)
    # then
    assert redirected.value.code == 302
    assert redirected.value.headers["Location"] == f"{shop_url}/orders/{order.order_no}/"
    assert fake.notify_replies == [(200, "success")]
    order.refresh_from_db()
    assert order.status in PAID
    assert len(_keys(order)) == 1


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# --- query and reconciliation ------------------------------------------------------------

def test_query_reports_a_paid_trade(fake, make_product, make_alipay_order):
    # given
    order = make_alipay_order(product=make_product(keys=1, price="10.00"))
    trade = _paid_at_fake(fake, order)
    # when
    notice = provider_get("alipay").query(payment=Payment.objects.get(order=order))
    # then
    assert (notice.succeeded, notice.external_id, notice.transaction_id, notice.reference, notice.amount,
            notice.currency, notice.verification) == (
        True, trade["trade_no"], trade["trade_no"], order.order_no, Decimal("10.00"), "CNY", "alipay.trade.query")
    assert notice.payload["trade_status"] == "TRADE_SUCCESS"
    assert _biz(fake.calls[0]) == {"out_trade_no": order.order_no}


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_query_of_an_unpaid_or_closed_trade_is_none(fake, make_product, make_alipay_order, status):
    # given
    order = make_alipay_order(product=make_product(keys=1))
    _paid_at_fake(fake, order)["trade_status"] = status
    # when / then
    assert provider_get("alipay").query(payment=Payment.objects.get(order=order)) is None


def test_query_of_an_unknown_trade_is_none(fake, make_product, make_alipay_order):
    order = make_alipay_order(product=make_product(keys=1))
    assert provider_get("alipay").query(payment=Payment.objects.get(order=order)) is None
    assert len(fake.calls) == 1


@pytest.mark.parametrize("trouble, code", [
    ("down", "GATEWAY_UNREACHABLE"),
    ("wrong_response_key", "SIGNATURE_INVALID"),
    ("wrong_app_key", "isv.invalid-signature"),
    ("unsigned", "SIGNATURE_MISSING"),
    ("unsigned_refusal", "isv.invalid-signature"),
])
def test_query_that_cannot_tell_raises(fake, alipay, make_product, make_alipay_order, trouble, code):
    # given: a paid trade, but the answer cannot be had or trusted
    order = make_alipay_order(product=make_product(keys=1))
    _paid_at_fake(fake, order)
    if trouble == "down":
        fake.down = True
    elif trouble == "wrong_response_key":
        fake.wrong_response_key = True
    elif trouble == "unsigned":
        fake.unsigned = True
    else:
        alipay.ALIPAY_PRIVATE_KEY = private_pem(fake.other_key)
        fake.unsigned = trouble == "unsigned_refusal"
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("alipay").query(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == code


def test_reconcile_completes_an_order_paid_without_a_notify(fake, make_product, make_alipay_order,
                                                           django_capture_on_commit_callbacks):
    # given: one paid at Alipay whose notify was lost, one nobody paid
    paid = make_alipay_order(product=make_product(keys=2))
    unpaid = make_alipay_order(product=make_product(keys=2))
    trade = _paid_at_fake(fake, paid)
    Payment.objects.filter(order__in=[paid, unpaid]).update(created_at=timezone.now() - timedelta(minutes=5))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = payments_reconcile(provider_id="alipay")
    # then
    assert (result.checked, result.completed, result.refused, result.unanswered) == (2, [paid.order_no], {}, 1)
    paid.refresh_from_db()
    unpaid.refresh_from_db()
    assert (paid.status in PAID, unpaid.status) == (True, OrderStatus.PENDING_PAYMENT)
    assert len(_keys(paid)) == 1 and _keys(unpaid) == []
    event = PaymentEvent.objects.get()
    assert (event.external_id, event.outcome, event.verification) == (
        trade["trade_no"], PaymentEventOutcome.ACCEPTED, "alipay.trade.query")


def test_query_before_credit_confirms_the_notify(client, fake, alipay, make_product, make_alipay_order,
                                                 django_capture_on_commit_callbacks):
    # given: the shop asks Alipay before it credits a notice
    alipay.ALIPAY_QUERY_BEFORE_CREDIT = True
    order = make_alipay_order(product=make_product(keys=2))
    _paid_at_fake(fake, order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, fake.notice(order.order_no))
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status in PAID
    assert [c["method"] for c in fake.calls] == ["alipay.trade.query"]


# --- refund -----------------------------------------------------------------------------

def test_refund_through_the_gateway_succeeds(client, fake, make_product, make_alipay_order,
                                             django_capture_on_commit_callbacks):
    # given: paid, waiting for stock (no keys)
    order = make_alipay_order(product=make_product(keys=0, price="10.00"))
    trade = _paid_at_fake(fake, order)
    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(client, fake.notice(order.order_no)).content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_STOCK
    # when
    refund = payment_refund(order=order, actor="staff:test", reason="out of stock")
    # then
    assert (refund.status, refund.external_id, refund.amount) == (
        RefundStatus.SUCCEEDED, trade["trade_no"], Decimal("10.00"))
    assert fake.refunds == [{"out_trade_no": order.order_no, "out_request_no": f"refund-{order.order_no}",
                             "refund_amount": "10.00"}]
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    # when: Alipay reports the refund back
    echoed = _notify(client, fake.refund_notice(order.order_no, out_biz_no=f"refund-{order.order_no}"))
    # then
    assert echoed.content == b"success"
    event = PaymentEvent.objects.get(kind=NoticeKind.REFUND)
    assert (event.external_id, event.outcome, event.reason_code) == (
        f"{trade['trade_no']}#refund#refund-{order.order_no}", PaymentEventOutcome.REFUNDED, "ALREADY_REFUNDED")
    assert Refund.objects.count() == 1


def test_refund_result_of_the_plugin(fake, make_product, make_alipay_order):
    # given
    order = make_alipay_order(product=make_product(keys=1, price="10.00"))
    trade = _paid_at_fake(fake, order)
    # when
    result = provider_get("alipay").refund(payment=Payment.objects.get(order=order), amount=Decimal("10.00"))
    # then
    assert result == RefundResult(status=RefundResult.SUCCEEDED, external_id=trade["trade_no"])
    assert fake.trades[order.order_no]["trade_status"] == "TRADE_CLOSED"


@pytest.mark.parametrize("trouble, code", [("not_paid", "ACQ.TRADE_NOT_EXIST"), ("down", "GATEWAY_UNREACHABLE")])
def test_refund_refused_or_unreachable_fails(fake, make_product, make_alipay_order, trouble, code):
    # given
    order = make_alipay_order(product=make_product(keys=1))
    fake.down = trouble == "down"
    # when
    with pytest.raises(RefundFailed) as raised:
        provider_get("alipay").refund(payment=Payment.objects.get(order=order), amount=Decimal("10.00"))
    # then
    assert raised.value.code == code
    assert fake.refunds == []


# --- probe ------------------------------------------------------------------------------

def test_probe_ok_with_the_gateway_clock(fake, alipay):
    # given
    fake.send_date = "Thu, 01 Jan 2026 04:00:00 GMT"
    # when
    result = provider_get("alipay").probe()
    # then
    assert (result.ok, result.code, result.detail, result.server_time) == (
        True, "OK", "alipay.trade.query: 40004 ACQ.TRADE_NOT_EXIST 交易不存在",
        datetime(2026, 1, 1, 4, 0, tzinfo=UTC))
    assert _biz(fake.calls[0]) == {"out_trade_no": "KDPROBE0000000000"}


def test_probe_with_a_wrong_app_key_is_auth_failed(fake, alipay):
    # given: the app public key in the console is not the pair of ALIPAY_PRIVATE_KEY
    alipay.ALIPAY_PRIVATE_KEY = private_pem(fake.other_key)
    fake.send_date = "Thu, 01 Jan 2026 04:00:00 GMT"
    # when
    result = provider_get("alipay").probe()
    # then
    assert (result.ok, result.code, result.fix, result.server_time) == (
        False, "AUTH_FAILED",
        "Upload the app public key that matches ALIPAY_PRIVATE_KEY in the Alipay console, or check the app id",
        datetime(2026, 1, 1, 4, 0, tzinfo=UTC))
    assert "isv.invalid-signature" in result.detail


def test_probe_with_a_wrong_app_key_answered_unsigned_is_auth_failed(fake, alipay):
    # given: Alipay may leave a refusal of the request unsigned
    alipay.ALIPAY_PRIVATE_KEY = private_pem(fake.other_key)
    fake.unsigned = True
    # when
    result = provider_get("alipay").probe()
    # then
    assert (result.ok, result.code) == (False, "AUTH_FAILED")
    assert result.fix.startswith("Upload the app public key that matches ALIPAY_PRIVATE_KEY")


def test_probe_answered_unsigned_is_a_bad_answer(fake, alipay):
    fake.unsigned = True
    result = provider_get("alipay").probe()
    assert (result.ok, result.code, result.detail) == (
        False, "BAD_ANSWER", "alipay.trade.query answered 40004 ACQ.TRADE_NOT_EXIST 交易不存在 without a sign")


def test_probe_with_the_app_public_key_for_alipays_is_auth_failed(fake, alipay):
    # given: the classic mistake: the app public key pasted as ALIPAY_PUBLIC_KEY
    alipay.ALIPAY_PUBLIC_KEY = fake.app_public_pem
    # when
    result = provider_get("alipay").probe()
    # then
    assert (result.ok, result.code, result.fix) == (
        False, "AUTH_FAILED",
        "ALIPAY_PUBLIC_KEY is not Alipay's public key for this app (it is not the app public key)")
    assert result.server_time is not None


def test_probe_with_an_unknown_app_id_is_auth_failed(fake, alipay):
    alipay.ALIPAY_APP_ID = "2021000000009999"
    result = provider_get("alipay").probe()
    assert (result.ok, result.code, result.fix) == (
        False, "AUTH_FAILED", "ALIPAY_APP_ID is not an app of this gateway: copy the app id from the Alipay console.")


def test_probe_of_a_gateway_that_is_down_is_unreachable(fake, alipay):
    # given
    fake.down = True
    # when
    result = provider_get("alipay").probe()
    # then
    assert (result.ok, result.code, result.server_time) == (False, "UNREACHABLE", None)
    assert result.fix == ("Check ALIPAY_GATEWAY (https://openapi.alipay.com/gateway.do) and that this server "
                          "reaches it.")


# --- hygiene ----------------------------------------------------------------------------

def test_no_key_sign_or_url_reaches_the_logs(client, fake, alipay, make_product, make_alipay_order, caplog):
    # given
    caplog.set_level(logging.DEBUG)
    order = make_alipay_order(product=make_product(keys=1))
    _paid_at_fake(fake, order)
    forged = fake.notice(order.order_no, key=fake.other_key)
    fake.wrong_response_key = True
    # when
    with pytest.raises(ProviderUnreachable):
        provider_get("alipay").start(payment=Payment.objects.get(order=order))
    _notify(client, forged)
    fake.down = True
    provider_get("alipay").probe()
    # then
    logged = caplog.text
    assert "SIGNATURE_INVALID" in logged  # something was logged
    for secret in (forged["sign"], "PRIVATE KEY", fake.alipay_public_base64[:40], fake.gateway_url,
                   fake.calls[0]["sign"]):
        assert secret not in logged
