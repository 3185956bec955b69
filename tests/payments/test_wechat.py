"""微信支付 WeChat Pay API v3, Native: the request signature, the QR code, the
signed and encrypted notify, the order query, refunds and the payment doctor,
against a fake WeChat Pay on loopback that signs, verifies and encrypts with
its own code and keys."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.urls import reverse
from django.utils import timezone

from delivery.models import Delivery
from inventory.models import CardKey, CardKeyStatus
from payments.methods import ProviderUnknown, provider_get
from payments.models import (
    Payment,
    PaymentEvent,
    PaymentEventKind,
    PaymentEventOutcome,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.providers.base import CallbackNotice, NoticeKind, PayAction, PayActionKind, ProviderUnreachable
from payments.providers.wechat import WechatPayProvider, wechat_authorization, wechat_request_message
from payments.services import checkout_start_payment, payment_refund, payments_reconcile
from shop.models import Order, OrderEvent, OrderStatus
from tests.fakes.wechat import FakeWechatPay, authorization_parse, private_pem, rsa_key

pytestmark = pytest.mark.django_db

NOTIFY_URL = "/payments/wechat/notify"
PROBE_PATH = "/v3/pay/transactions/out-trade-no/KDPROBE0000000000"


def _configure(settings, fake: FakeWechatPay) -> None:
    settings.WECHATPAY_MCHID = fake.mchid
    settings.WECHATPAY_APPID = fake.appid
    settings.WECHATPAY_SERIAL = fake.merchant_serial
    settings.WECHATPAY_PRIVATE_KEY = fake.merchant_private_pem
    settings.WECHATPAY_APIV3_KEY = fake.apiv3_key
    settings.WECHATPAY_PLATFORM_PUBLIC_KEY = fake.platform_public_pem
    settings.WECHATPAY_PLATFORM_KEY_ID = fake.platform_key_id
    settings.WECHATPAY_GATEWAY = fake.url
    settings.SITE_URL = "https://shop.example.com"


@pytest.fixture
def wechat(settings):
    """WeChat Pay configured against a fake on loopback."""
    fake = FakeWechatPay()
    _configure(settings, fake)
    yield fake
    fake.close()


@pytest.fixture
def shop_live(live_server, settings, wechat):
    """The shop served for real, so the fake's notify reaches it over HTTP."""
    settings.SITE_URL = live_server.url
    return live_server


@pytest.fixture
def wechat_order(make_unpaid_order, make_product, wechat):
    """An unpaid order paid through WeChat Pay, its Native order opened at the fake."""

    def make(*, keys: int = 3, price: str = "10.00", open: bool = True, **product) -> Order:
        order = make_unpaid_order(product=make_product(keys=keys, price=price, **product))
        Payment.objects.filter(order=order).update(provider="wechat")
        if open:
            provider_get("wechat").start(payment=Payment.objects.get(order=order))
        return order

    return make


def _notify(client, body: bytes, headers: dict):
    """POST a notify the way WeChat does, through Django's test client."""
    return client.post(NOTIFY_URL, body, content_type="application/json",
                       headers={k: v for k, v in headers.items() if k != "Content-Type"})


def _state(order: Order) -> dict:
    order.refresh_from_db()
    return {
        "status": order.status,
        "payment": Payment.objects.filter(order=order).values_list("status", "external_id").get(),
        "keys": list(CardKey.objects.filter(order_line__order=order).order_by("id").values_list("id", "status")),
        "deliveries": Delivery.objects.filter(order=order).count(),
        "events": OrderEvent.objects.filter(order=order).count(),
        "notices": PaymentEvent.objects.count(),
    }


def _delivered(order: Order) -> int:
    return CardKey.objects.filter(order_line__order=order, status=CardKeyStatus.DELIVERED).count()


def _rejected(response, code: str) -> bool:
    return (response.status_code, response.json()) == (400, {"code": "FAIL", "message": code})


# --- the request signature ----------------------------------------------------------

def test_the_signed_message_of_a_fixed_request():
    # given / when
    post = wechat_request_message("POST", "/v3/pay/transactions/native", "1554208460",
                                  "593BEC0C930BF1AFEB40B4A08C8FB242", '{"appid":"wxd678efh567hg6787"}')
    get = wechat_request_message("GET", "/v3/pay/transactions/out-trade-no/T1?mchid=1900009191", "1554208460",
                                 "593BEC0C930BF1AFEB40B4A08C8FB242", b"")
    # then
    assert post == (b'POST\n/v3/pay/transactions/native\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n'
                    b'{"appid":"wxd678efh567hg6787"}\n')
    assert get == (b"GET\n/v3/pay/transactions/out-trade-no/T1?mchid=1900009191\n1554208460\n"
                   b"593BEC0C930BF1AFEB40B4A08C8FB242\n\n")


def test_the_authorization_header_is_an_rsa_sha256_signature_with_the_merchant_key():
    # given
    key = rsa_key("merchant")
    body = b'{"mchid":"1900009191"}'
    # when
    header = wechat_authorization(private_key=key, mchid="1900009191", serial="5157F09EFDC096DE15EBE81A47057A72",
                                  method="POST", path="/v3/refund/domestic/refunds", body=body,
                                  timestamp="1554208460", nonce="593BEC0C930BF1AFEB40B4A08C8FB242")
    # then
    fields = authorization_parse(header)
    signature = fields.pop("signature")
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900009191",'
                             'nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",signature="')
    assert header.endswith('",timestamp="1554208460",serial_no="5157F09EFDC096DE15EBE81A47057A72"')
    assert fields == {"mchid": "1900009191", "nonce_str": "593BEC0C930BF1AFEB40B4A08C8FB242",
                      "timestamp": "1554208460", "serial_no": "5157F09EFDC096DE15EBE81A47057A72"}
    expected = b"POST\n/v3/refund/domestic/refunds\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n" + body + b"\n"
    key.public_key().verify(base64.b64decode(signature), expected, padding.PKCS1v15(), hashes.SHA256())


def test_the_plugin_declares_what_it_needs(wechat):
    provider = provider_get("wechat")
    assert isinstance(provider, WechatPayProvider)
    assert (provider.plugin, provider.id, provider.can_query, provider.notify_methods) == (
        "wechat", "wechat", True, ("POST",))
    assert provider.required_secrets == ("private_key", "apiv3_key", "platform_public_key")
    assert provider.required_settings == ("merchant_id", "app_id", "key_serial", "gateway")


def test_wechat_is_disabled_without_its_apiv3_key(client, wechat, settings):
    # given
    settings.WECHATPAY_APIV3_KEY = ""
    # when / then
    with pytest.raises(ProviderUnknown):
        provider_get("wechat")
    assert client.post(NOTIFY_URL, b"{}", content_type="application/json").status_code == 404


# --- opening the payment -------------------------------------------------------------

def test_start_opens_a_native_order_and_shows_its_qr_code(wechat, wechat_order):
    # given
    order = wechat_order(open=False, name="VIP 30d")
    payment = Payment.objects.get(order=order)
    # when
    action = provider_get("wechat").start(payment=payment)
    # then
    assert action == PayAction(kind=PayActionKind.QR, qr="weixin://wxpay/bizpayurl?pr=0000001")
    (request,) = wechat.requests
    assert (request.method, request.path) == ("POST", "/v3/pay/transactions/native")
    assert request.json() == {
        "appid": wechat.appid, "mchid": wechat.mchid, "description": "VIP 30d", "out_trade_no": order.order_no,
        "notify_url": "https://shop.example.com/payments/wechat/notify",
        "amount": {"total": 1000, "currency": "CNY"},
    }
    assert (request.headers["accept"], request.headers["content-type"]) == ("application/json", "application/json")
    assert request.headers["user-agent"].startswith("Kamidrop")
    # the fake verified the signature with the merchant's public key
    (auth,) = wechat.verified
    assert (auth["mchid"], auth["serial_no"]) == (wechat.mchid, wechat.merchant_serial)


def test_checkout_with_wechat_sends_the_buyer_to_the_shops_qr_page(client, wechat, make_product):
    # given
    make_product(keys=2, slug="vip-30d", name="VIP 30d", price="25.50")
    # when
    started = checkout_start_payment(product_slug="vip-30d", quantity=1, email="buyer@example.com",
                                     provider_id="wechat")
    # then
    reference = started.order.order_no
    assert started.pay_url == reverse("payments:pay", args=[reference])
    assert Payment.objects.get(order=started.order).pay_action == {
        "kind": "QR", "qr": "weixin://wxpay/bizpayurl?pr=0000001"}
    assert wechat.orders[reference]["amount"] == {"total": 2550, "currency": "CNY"}
    page = client.get(started.pay_url)
    assert page.status_code == 200
    assert "<svg" in page.content.decode()


def test_a_long_description_is_cut_to_127_bytes_on_a_character_boundary(wechat, wechat_order):
    # given: 60 Chinese characters, 180 bytes of UTF-8
    order = wechat_order(open=False, name="月" * 60)
    # when
    provider_get("wechat").start(payment=Payment.objects.get(order=order))
    # then: 42 characters (126 bytes)
    assert wechat.orders[order.order_no]["description"] == "月" * 42


@pytest.mark.parametrize("how, code", [
    ("signed with another key", "SIGNATURE_INVALID"),
    ("another platform key id", "SIGNATURE_INVALID"),
    ("ten minutes old", "BAD_ANSWER"),
])
def test_an_answer_that_fails_verification_is_provider_unreachable(wechat, wechat_order, settings, how, code):
    # given
    order = wechat_order(open=False)
    if how == "signed with another key":
        wechat.wrong_platform_key = True
    elif how == "another platform key id":
        settings.WECHATPAY_PLATFORM_KEY_ID = "PUB_KEY_ID_0114232134912410000000000999"
    else:
        wechat.answer_age = 600
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("wechat").start(payment=Payment.objects.get(order=order))
    # then: WeChat booked it, but the shop shows no code it cannot trust
    assert raised.value.code == code
    assert list(wechat.orders) == [order.order_no]


@pytest.mark.parametrize("setting, value, code", [
    ("WECHATPAY_APPID", "wx0000000000000000", "APPID_MCHID_NOT_MATCH"),
    ("WECHATPAY_PRIVATE_KEY", "other", "SIGN_ERROR"),
    ("WECHATPAY_SERIAL", "0000000000000000000000000000000000000000", "SIGN_ERROR"),
])
def test_a_refused_order_raises_wechats_error_code(wechat, wechat_order, settings, setting, value, code):
    # given
    order = wechat_order(open=False)
    setattr(settings, setting, private_pem(rsa_key("other")) if value == "other" else value)
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("wechat").start(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == code
    assert wechat.orders == {}


def test_a_private_key_that_does_not_load_is_key_invalid_and_nothing_is_sent(wechat, wechat_order, settings):
    # given
    order = wechat_order(open=False)
    settings.WECHATPAY_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("wechat").start(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == "KEY_INVALID"
    assert wechat.requests == []


def test_start_while_wechat_is_down_is_unreachable(wechat, wechat_order):
    # given
    order = wechat_order(open=False)
    wechat.down = True
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("wechat").start(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == "GATEWAY_UNREACHABLE"


# --- the notify ----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_paid_notify_pays_the_order_and_delivers_its_key(shop_live, wechat, wechat_order):
    # given
    order = wechat_order(keys=3)
    # when: the buyer scans and pays; WeChat notifies the shop
    reply = wechat.pay(order.order_no)
    # then
    assert reply == (204, "")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    trade = wechat.trades[order.order_no]
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.external_id) == (PaymentStatus.SUCCEEDED, trade["transaction_id"])
    event = PaymentEvent.objects.get()
    assert (event.provider, event.external_id, event.transaction_id, event.reference, event.outcome, event.amount,
            event.currency, event.kind, event.verification) == (
        "wechat", trade["transaction_id"], trade["transaction_id"], order.order_no, PaymentEventOutcome.ACCEPTED,
        Decimal("10.00"), "CNY", PaymentEventKind.PAYMENT, "WECHATPAY2-SHA256-RSA2048 valid",
    )
    # the evidence is the decrypted trade, with the envelope it came in
    assert event.payload["transaction"] == trade
    assert set(event.payload["event"]) == {"id", "create_time", "resource_type", "event_type", "summary"}
    assert event.payload["event"]["event_type"] == "TRANSACTION.SUCCESS"
    assert _delivered(order) == 1


@pytest.mark.django_db(transaction=True)
def test_a_repeated_notify_is_acknowledged_and_delivers_once(shop_live, wechat, wechat_order):
    # given
    order = wechat_order(keys=3)
    first = wechat.pay(order.order_no)
    before = _state(order)
    # when: WeChat sends it again (a new envelope, the same trade)
    again = wechat.pay(order.order_no)
    # then
    assert (first, again) == ((204, ""), (204, ""))
    assert _state(order) == before
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED]
    assert _delivered(order) == 1


@pytest.mark.parametrize("forgery, code", [
    ("signed with another key", "SIGNATURE_INVALID"),
    ("body changed after signing", "SIGNATURE_INVALID"),
    ("signature not base64", "SIGNATURE_INVALID"),
    ("another platform key id", "SIGNATURE_INVALID"),
    ("timestamp not a number", "SIGNATURE_INVALID"),
    ("no signature headers", "SIGNATURE_MISSING"),
])
def test_a_forged_notify_is_refused_before_the_database(client, wechat, wechat_order, forgery, code):
    # given
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no)
    headers = wechat.notify_headers(body)
    if forgery == "signed with another key":
        headers = wechat.notify_headers(body, key=wechat.other_key)
    elif forgery == "body changed after signing":
        body = wechat.notify_body(order.order_no)  # a fresh envelope: same trade, other bytes
    elif forgery == "signature not base64":
        headers["Wechatpay-Signature"] = "%%%not-base64%%%"
    elif forgery == "another platform key id":
        headers = wechat.notify_headers(body, serial="PUB_KEY_ID_0114232134912410000000000999")
    elif forgery == "timestamp not a number":
        headers["Wechatpay-Timestamp"] = "1e9"
    else:
        headers = {}
    before = _state(order)
    # when
    response = _notify(client, body, headers)
    # then
    assert _rejected(response, code)
    assert _state(order) == before
    assert PaymentEvent.objects.count() == 0


def test_a_notice_encrypted_with_another_apiv3_key_is_refused(client, wechat, wechat_order):
    # given: signed by WeChat's platform key, but not encrypted for this merchant
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no, apiv3_key="ZYXWVUTSRQPONMLKJIHGFEDCBA987654")
    before = _state(order)
    # when
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert _rejected(response, "DECRYPT_FAILED")
    assert _state(order) == before


def test_a_stale_notice_is_refused(client, wechat, wechat_order):
    # given: correctly signed six minutes ago (a replay)
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no)
    headers = wechat.notify_headers(body, timestamp=int(time.time()) - 360)
    before = _state(order)
    # when
    response = _notify(client, body, headers)
    # then
    assert _rejected(response, "TIMESTAMP_STALE")
    assert _state(order) == before


@pytest.mark.parametrize("override", [{"mchid": "1900000001"}, {"appid": "wx0000000000000000"}])
def test_a_notice_for_another_merchant_is_refused(client, wechat, wechat_order, override):
    # given: authentic and decryptable, but about another merchant's trade
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no, **override)
    before = _state(order)
    # when
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert _rejected(response, "MERCHANT_MISMATCH")
    assert _state(order) == before


@pytest.mark.parametrize("total", ["1000", -1, 10.5, True, None])
def test_a_total_that_is_not_a_whole_number_of_fen_is_refused(client, wechat, wechat_order, total):
    # given
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no, total=total)
    before = _state(order)
    # when
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert _rejected(response, "AMOUNT_INVALID")
    assert _state(order) == before


def test_a_platform_key_that_does_not_load_refuses_every_notice(client, wechat, wechat_order, settings):
    # given
    order = wechat_order()
    wechat.book(order.order_no)
    settings.WECHATPAY_PLATFORM_PUBLIC_KEY = "not a key"
    body = wechat.notify_body(order.order_no)
    before = _state(order)
    # when
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert _rejected(response, "SIGNATURE_INVALID")
    assert _state(order) == before


def test_an_underpaid_notice_is_recorded_rejected_and_delivers_nothing(client, wechat, wechat_order):
    # given: 9.99 paid for 10.00
    order = wechat_order()
    wechat.book(order.order_no, total=999)
    body = wechat.notify_body(order.order_no)
    # when
    response = _notify(client, body, wechat.notify_headers(body))
    # then: acknowledged (WeChat retrying would change nothing), not paid
    assert (response.status_code, response.content) == (204, b"")
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code, event.amount) == (
        PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH", Decimal("9.99"))
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert Payment.objects.get(order=order).status == PaymentStatus.CREATED
    assert _delivered(order) == 0


def test_a_payment_after_the_hold_expired_is_still_delivered(client, wechat, wechat_order,
                                                             django_capture_on_commit_callbacks):
    # given
    order = wechat_order()
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert (response.status_code, response.content) == (204, b"")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.ACCEPTED
    assert _delivered(order) == 1


def test_a_refund_reported_before_the_payment_lets_no_key_out(client, wechat, wechat_order):
    # given: WeChat's REFUND.SUCCESS of the trade arrives before its TRANSACTION.SUCCESS
    order = wechat_order()
    wechat.book(order.order_no)
    refund = wechat.refund_notify(order.order_no)
    assert _notify(client, refund, wechat.notify_headers(refund)).status_code == 204
    paid = wechat.notify_body(order.order_no)
    # when
    response = _notify(client, paid, wechat.notify_headers(paid))
    # then: acknowledged, but the money went back: the keys must not go out
    assert response.status_code == 204
    order.refresh_from_db()
    assert order.status not in Order.KEYS_VISIBLE
    assert _delivered(order) == 0


def test_a_trade_state_other_than_success_does_not_shadow_the_success(client, wechat, wechat_order):
    # given: a report of the trade in another state first, same transaction id
    order = wechat_order()
    trade = wechat.book(order.order_no)
    waiting = wechat.notify_body(order.order_no, trade_state="USERPAYING")
    first = _notify(client, waiting, wechat.notify_headers(waiting))
    order.refresh_from_db()
    assert (first.status_code, order.status) == (204, OrderStatus.PENDING_PAYMENT)
    # when
    paid = wechat.notify_body(order.order_no)
    response = _notify(client, paid, wechat.notify_headers(paid))
    # then
    assert response.status_code == 204
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert sorted(PaymentEvent.objects.values_list("external_id", "outcome")) == [
        (trade["transaction_id"], PaymentEventOutcome.ACCEPTED),
        (f"{trade['transaction_id']}#USERPAYING", PaymentEventOutcome.IGNORED),
    ]


def test_a_refund_at_wechat_after_delivery_is_recorded_and_flagged(client, wechat, wechat_order):
    # given: paid and delivered
    order = wechat_order()
    trade = wechat.book(order.order_no)
    paid = wechat.notify_body(order.order_no)
    assert _notify(client, paid, wechat.notify_headers(paid)).status_code == 204
    # when: refunded from the merchant platform
    body = wechat.refund_notify(order.order_no, refund_id="50300000000000000000000000001")
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert (response.status_code, response.content) == (204, b"")
    notice = PaymentEvent.objects.get(kind=PaymentEventKind.REFUND)
    assert (notice.external_id, notice.transaction_id, notice.reference, notice.amount, notice.currency,
            notice.outcome, notice.reason_code) == (
        "50300000000000000000000000001", trade["transaction_id"], order.order_no, Decimal("10.00"), "CNY",
        PaymentEventOutcome.REFUNDED, "REFUNDED_AFTER_DELIVERY",
    )
    assert notice.payload["refund"]["refund_status"] == "SUCCESS"
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED


def test_an_event_the_shop_does_not_act_on_is_acknowledged_and_not_recorded(client, wechat, wechat_order):
    # given
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.refund_notify(order.order_no, event_type="REFUND.ABNORMAL", refund_status="ABNORMAL")
    before = _state(order)
    # when
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert (response.status_code, response.content) == (204, b"")
    assert _state(order) == before


def test_notify_accepts_only_post(client, wechat):
    assert client.get(NOTIFY_URL).status_code == 405
    assert client.put(NOTIFY_URL).status_code == 405


def test_nothing_secret_is_logged(client, wechat, wechat_order, caplog, settings):
    # given
    order = wechat_order()
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no)
    forged = wechat.notify_headers(body, key=wechat.other_key)
    # when
    with caplog.at_level("DEBUG"):
        _notify(client, body, forged)
        _notify(client, body, wechat.notify_headers(body))
        provider_get("wechat").query(payment=Payment.objects.get(order=order))
    # then
    logged = caplog.text
    ciphertext = json.loads(body)["resource"]["ciphertext"]
    for secret in (ciphertext, forged["Wechatpay-Signature"], wechat.apiv3_key, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                   settings.WECHATPAY_PRIVATE_KEY.splitlines()[1]):
        assert secret not in logged


# --- the order query and reconciliation ----------------------------------------------------

def test_query_reports_a_paid_trade(wechat, wechat_order):
    # given
    order = wechat_order()
    trade = wechat.book(order.order_no)
    # when
    notice = provider_get("wechat").query(payment=Payment.objects.get(order=order))
    # then
    assert notice == CallbackNotice(
        external_id=trade["transaction_id"], transaction_id=trade["transaction_id"], reference=order.order_no,
        amount=Decimal("10.00"), currency="CNY", succeeded=True, payload={"transaction": trade},
        kind=NoticeKind.PAYMENT, verification="WeChat Pay order query",
    )
    request = wechat.requests[-1]
    assert (request.method, request.path, request.query, request.body) == (
        "GET", f"/v3/pay/transactions/out-trade-no/{order.order_no}", {"mchid": wechat.mchid}, b"")


@pytest.mark.parametrize("opened", [True, False])
def test_query_of_an_unpaid_or_unknown_trade_is_none(wechat, wechat_order, opened):
    # given: opened and not paid (NOTPAY), or never opened (404 ORDER_NOT_EXIST)
    order = wechat_order(open=opened)
    # when
    notice = provider_get("wechat").query(payment=Payment.objects.get(order=order))
    # then
    assert notice is None
    assert len(wechat.verified) == (2 if opened else 1)


@pytest.mark.parametrize("state, unpaid", [("CLOSED", True), ("PAYERROR", True), ("REFUND", False)])
def test_query_of_a_trade_in_another_state(wechat, wechat_order, state, unpaid):
    # given: closed or failed (not paid), or paid and refunded (the shop cannot simply tell)
    order = wechat_order()
    wechat.book(order.order_no)["trade_state"] = state
    provider = provider_get("wechat")
    payment = Payment.objects.get(order=order)
    # when / then
    if unpaid:
        assert provider.query(payment=payment) is None
    else:
        with pytest.raises(ProviderUnreachable) as raised:
            provider.query(payment=payment)
        assert raised.value.code == "BAD_ANSWER"


@pytest.mark.parametrize("how, code", [
    ("down", "GATEWAY_UNREACHABLE"),
    ("signed with another key", "SIGNATURE_INVALID"),
])
def test_query_that_cannot_tell_is_provider_unreachable(wechat, wechat_order, how, code):
    # given: paid, but the answer cannot be had or trusted
    order = wechat_order()
    wechat.pay(order.order_no, notify=False)
    wechat.down = how == "down"
    wechat.wrong_platform_key = how != "down"
    # when
    with pytest.raises(ProviderUnreachable) as raised:
        provider_get("wechat").query(payment=Payment.objects.get(order=order))
    # then
    assert raised.value.code == code


def test_reconcile_completes_a_paid_trade_whose_notify_never_came(client, wechat, wechat_order,
                                                                  django_capture_on_commit_callbacks):
    # given: paid at WeChat five minutes ago, the notify lost
    order = wechat_order()
    trade = wechat.book(order.order_no)
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = payments_reconcile(provider_id="wechat")
    # then
    assert (result.checked, result.completed, result.refused, result.unanswered) == (1, [order.order_no], {}, 0)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert Payment.objects.get(order=order).external_id == trade["transaction_id"]
    assert _delivered(order) == 1
    # and the notify turning up late is the same trade: acknowledged, nothing more
    before = _state(order)
    body = wechat.notify_body(order.order_no)
    assert _notify(client, body, wechat.notify_headers(body)).status_code == 204
    assert _state(order) == before


def test_reconcile_leaves_an_unpaid_trade_alone(wechat, wechat_order):
    # given
    order = wechat_order()
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))
    before = _state(order)
    # when
    result = payments_reconcile(provider_id="wechat")
    # then
    assert (result.checked, result.completed, result.unanswered) == (1, [], 1)
    assert _state(order) == before


def test_reconcile_while_wechat_is_down_leaves_the_order_for_later(wechat, wechat_order):
    # given: paid at WeChat, the notify lost, and WeChat unreachable now
    order = wechat_order()
    wechat.book(order.order_no)
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))
    wechat.down = True
    before = _state(order)
    # when
    result = payments_reconcile(provider_id="wechat")
    # then: "cannot tell" is counted and kept for the next run, not read as paid or not paid
    assert (result.checked, result.completed, result.refused, result.unanswered) == (1, [], {}, 1)
    assert _state(order) == before


# --- refunds ---------------------------------------------------------------------------------

@pytest.fixture
def paid_awaiting_stock(client, wechat, wechat_order):
    """An order paid through a notify, waiting for stock (so refundable)."""
    order = wechat_order(keys=0)
    wechat.book(order.order_no)
    body = wechat.notify_body(order.order_no)
    assert _notify(client, body, wechat.notify_headers(body)).status_code == 204
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_STOCK
    return order


def test_a_refund_goes_through_wechat(wechat, paid_awaiting_stock):
    # given
    order = paid_awaiting_stock
    # when
    refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    # then
    booked = wechat.refunds[f"refund-{order.order_no}"]
    assert (refund.status, refund.external_id) == (RefundStatus.SUCCEEDED, booked["refund_id"])
    request = wechat.requests[-1]
    assert (request.method, request.path) == ("POST", "/v3/refund/domestic/refunds")
    assert request.json() == {"out_trade_no": order.order_no, "out_refund_no": f"refund-{order.order_no}",
                              "amount": {"refund": 1000, "total": 1000, "currency": "CNY"}}
    assert wechat.verified[-1]["mchid"] == wechat.mchid
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED


def test_our_refund_reported_back_by_wechat_changes_nothing(client, wechat, paid_awaiting_stock):
    # given
    order = paid_awaiting_stock
    refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    before = _state(order)
    # when
    body = wechat.refund_notify(order.order_no, refund_id=refund.external_id)
    response = _notify(client, body, wechat.notify_headers(body))
    # then
    assert response.status_code == 204
    assert _state(order) == {**before, "notices": before["notices"] + 1}
    assert PaymentEvent.objects.get(kind=PaymentEventKind.REFUND).reason_code == "ALREADY_REFUNDED"


@pytest.mark.parametrize("how, error", [
    ("refused", "NOT_ENOUGH: WeChat Pay answered HTTP 403"),
    ("down", "GATEWAY_UNREACHABLE"),
    ("signed with another key", "SIGNATURE_INVALID: the answer's signature is invalid"),
])
def test_a_refund_wechat_does_not_confirm_is_failed(wechat, paid_awaiting_stock, how, error):
    # given
    order = paid_awaiting_stock
    if how == "refused":
        wechat.refund_error = (403, "NOT_ENOUGH")
    elif how == "down":
        wechat.down = True
    else:
        wechat.wrong_platform_key = True
    # when
    refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    # then
    assert refund.status == RefundStatus.FAILED
    # (the network error's class name follows the code when WeChat is down)
    assert refund.error.partition(":")[0] == error if how == "down" else refund.error == error
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED
    assert Refund.objects.get().status == RefundStatus.FAILED


# --- the payment doctor -----------------------------------------------------------------------

def test_probe_is_ok_when_wechat_answers_not_found_signed(wechat):
    # when
    result = provider_get("wechat").probe()
    # then
    assert (result.ok, result.code, result.fix) == (True, "OK", "")
    assert abs((result.server_time - timezone.now()).total_seconds()) < 5
    request = wechat.requests[0]
    assert (request.path, request.query) == (PROBE_PATH, {"mchid": wechat.mchid})


def test_probe_with_the_wrong_merchant_key_is_auth_failed(wechat, settings):
    # given: a private key that is not the one of certificate WECHATPAY_SERIAL
    settings.WECHATPAY_PRIVATE_KEY = private_pem(rsa_key("other"))
    # when
    result = provider_get("wechat").probe()
    # then
    assert (result.ok, result.code, result.detail) == (
        False, "AUTH_FAILED", "WeChat Pay refused the request signature (SIGN_ERROR)")
    assert result.fix == (
        f"The private key does not match certificate serial WECHATPAY_SERIAL ({wechat.merchant_serial}) of merchant "
        f"{wechat.mchid}: paste apiclient_key.pem into WECHATPAY_PRIVATE_KEY and the serial of apiclient_cert.pem "
        "into WECHATPAY_SERIAL, both from the same API certificate."
    )
    assert result.server_time is not None


def test_probe_with_the_wrong_platform_key_is_auth_failed(wechat):
    # given: WeChat signs with a key the shop was not given
    wechat.wrong_platform_key = True
    # when
    result = provider_get("wechat").probe()
    # then
    assert (result.ok, result.code, result.detail) == (
        False, "AUTH_FAILED", "WeChat Pay's answer failed verification (SIGNATURE_INVALID)")
    assert result.fix == (
        "WECHATPAY_PLATFORM_PUBLIC_KEY does not verify WeChat's answers: paste the WeChat Pay public key (or "
        "platform certificate) from the merchant platform, and its id (PUB_KEY_ID_…, or the certificate serial) "
        "into WECHATPAY_PLATFORM_KEY_ID; check this server's clock."
    )
    assert result.server_time is not None


def test_probe_while_wechat_is_down_is_unreachable(wechat):
    # given
    wechat.down = True
    # when
    result = provider_get("wechat").probe()
    # then
    assert (result.ok, result.code, result.detail, result.server_time) == (
        False, "UNREACHABLE", f"{wechat.url}: GATEWAY_UNREACHABLE", None)
    assert result.fix == ("Check WECHATPAY_GATEWAY (https://api.mch.weixin.qq.com) and that this server reaches it "
                          "(firewall, proxy).")
