"""易支付 (EPay v1): the issue's sign vectors, the submit redirect, the notify on GET and POST."""

import os
import subprocess
import sys
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery.models import Delivery
from inventory.models import CardKey, CardKeyStatus
from payments.methods import ProviderUnknown, provider_get
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from payments.providers import epay as epay_module
from payments.providers.epay import EpayKeyMissing, epay_sign
from payments.services import checkout_start_payment, payment_notices_apply
from shop.models import Order, OrderEvent, OrderStatus
from tests.payments.conftest import EPAY_KEY, EPAY_NOTIFY_URL, epay_notice

pytestmark = pytest.mark.django_db

SUBMIT_VECTOR = {
    "money": "1.00", "name": "VIP 30d", "notify_url": "https://shop.example.com/pay/epay/notify",
    "out_trade_no": "20240101000001", "pid": "1001", "return_url": "https://shop.example.com/pay/epay/return",
    "type": "alipay",
}
NOTIFY_VECTOR = {
    "money": "1.00", "name": "VIP 30d", "out_trade_no": "20240101000001", "pid": "1001",
    "trade_no": "2024010112000012345", "trade_status": "TRADE_SUCCESS", "type": "alipay", "param": "",
    "sign_type": "MD5",
}


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


def test_submit_sign_matches_the_issue_vector():
    assert epay_sign(SUBMIT_VECTOR, "TESTKEY123") == "6bb02f4d3e0a56f1b4566a1fc0ede712"


def test_notify_sign_matches_the_issue_vector():
    # sign_type and the empty param are left out of the signed string
    assert epay_sign(NOTIFY_VECTOR, "TESTKEY123") == "1c0079e2c2f422beed3f6674a3b43d00"
    assert epay_sign({**NOTIFY_VECTOR, "sign": "anything"}, "TESTKEY123") == "1c0079e2c2f422beed3f6674a3b43d00"


def test_sign_refuses_an_empty_key():
    with pytest.raises(EpayKeyMissing):
        epay_sign(NOTIFY_VECTOR, "")


def test_start_builds_the_signed_submit_redirect(make_product, make_epay_order):
    # given
    order = make_epay_order(product=make_product(keys=1, price="1.00", name="VIP 30d"), order_no="20240101000001")
    payment = Payment.objects.get(order=order)
    # when
    action = provider_get("epay").start(payment=payment)
    # then
    assert action.kind == "REDIRECT"
    base, _, query = action.url.partition("?")
    assert base == "https://pay.example.com/submit.php"
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    signed = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
    assert set(signed) == {"pid", "out_trade_no", "notify_url", "return_url", "name", "money"}
    assert (signed["pid"], signed["out_trade_no"], signed["name"], signed["money"]) == (
        "1001", "20240101000001", "VIP 30d", "1.00"
    )
    assert signed["notify_url"] == "https://shop.example.com/payments/epay/notify"
    # no secret rides along to the gateway: the buyer's own session opens the order page
    assert signed["return_url"] == "https://shop.example.com/orders/20240101000001/"
    assert params["sign_type"] == "MD5"
    assert params["sign"] == epay_sign(signed, EPAY_KEY)


def test_a_checkout_names_the_variant_at_the_gateway_without_reading_its_line_again(make_product, epay):
    # given: a membership sold by the 90-day option
    membership = make_product(slug="membership", name="Membership")
    make_product(keys=1, slug="membership-90", name="90 days", parent=membership, price="25.00")
    # when
    with CaptureQueriesContext(connection) as statements:
        started = checkout_start_payment(product_slug="membership-90", quantity=1, email="buyer@example.com",
                                         provider_id="epay")
    # then: the gateway shows the product and its option; the name came from the checkout's own read
    params = dict(urllib.parse.parse_qsl(started.action.url.partition("?")[2]))
    assert params["name"] == "Membership · 90 days"
    assert not [q for q in statements.captured_queries if q["sql"].startswith('SELECT "shop_orderline"')]


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_issue_notify_vector_pays_the_order(client, make_product, make_epay_order, method,
                                                django_capture_on_commit_callbacks):
    # given: the order of the vector, 1.00 CNY
    order = make_epay_order(product=make_product(keys=2, price="1.00"), order_no="20240101000001")
    params = {**NOTIFY_VECTOR, "sign": "1c0079e2c2f422beed3f6674a3b43d00"}
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client, method)(EPAY_NOTIFY_URL, params)
    # then
    assert (response.status_code, response.content, response["Content-Type"]) == (200, b"success", "text/plain")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.external_id) == (PaymentStatus.SUCCEEDED, "2024010112000012345")
    event = PaymentEvent.objects.get()
    assert (event.provider, event.external_id, event.outcome, event.amount, event.currency) == (
        "epay", "2024010112000012345", PaymentEventOutcome.ACCEPTED, Decimal("1.00"), "CNY"
    )
    assert event.payload == params
    assert event.verification == f"MD5 sign valid ({method.upper()})"
    assert CardKey.objects.filter(order_line__order=order, status=CardKeyStatus.DELIVERED).count() == 1


def test_duplicate_notify_is_answered_success_and_changes_nothing(client, make_product, make_epay_order,
                                                                  django_capture_on_commit_callbacks):
    # given
    order = make_epay_order(product=make_product(keys=3))
    notice = epay_notice(order)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(EPAY_NOTIFY_URL, notice).content == b"success"
    before = _state(order)
    # when: the gateway retries, once by POST and once by GET
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = client.post(EPAY_NOTIFY_URL, notice)
        by_get = client.get(EPAY_NOTIFY_URL, notice)
    # then
    assert (again.status_code, again.content) == (200, b"success")
    assert (by_get.status_code, by_get.content) == (200, b"success")
    assert _state(order) == before
    assert callbacks == []


@pytest.mark.parametrize("tamper", [
    {"sign": "0" * 32},
    {"money": "0.01"},
    {"out_trade_no": "20240101999999"},
    {"sign_type": "SHA256"},
    {"sign": ""},
])
def test_forged_or_tampered_notify_is_refused_before_the_database(client, make_product, make_epay_order, tamper):
    # given
    order = make_epay_order(product=make_product(keys=3))
    notice = {**epay_notice(order), **tamper}
    before = _state(order)
    # when
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert (response.status_code, response.content) == (400, b"fail")
    assert _state(order) == before
    assert PaymentEvent.objects.count() == 0


def test_notify_signed_with_another_key_is_refused(client, make_product, make_epay_order):
    # given
    order = make_epay_order(product=make_product(keys=3))
    before = _state(order)
    # when
    response = client.get(EPAY_NOTIFY_URL, epay_notice(order, key="OTHERKEY"))
    # then
    assert response.content == b"fail"
    assert _state(order) == before


def test_the_sign_is_compared_in_constant_time(client, make_product, make_epay_order, monkeypatch):
    # given
    order = make_epay_order(product=make_product(keys=3))
    compared = []
    real = epay_module.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(epay_module.hmac, "compare_digest", spy)
    notice = epay_notice(order)
    # when
    client.post(EPAY_NOTIFY_URL, notice)
    # then: the sign went through hmac.compare_digest (then the pid)
    assert compared[0] == (notice["sign"].encode(), notice["sign"].encode())


def test_other_merchant_id_is_refused(client, make_product, make_epay_order):
    # given: correctly signed, but for merchant 2002
    order = make_epay_order(product=make_product(keys=3))
    before = _state(order)
    notice = epay_notice(order)
    notice["pid"] = "2002"
    notice["sign"] = epay_sign(notice, EPAY_KEY)
    # when
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert response.content == b"fail"
    assert _state(order) == before


@pytest.mark.parametrize("money", ["1.001", "1e0", "-1.00", "0.00", "", "1,00"])
def test_money_that_is_not_a_two_place_amount_is_refused(client, make_product, make_epay_order, money):
    # given
    order = make_epay_order(product=make_product(keys=3))
    before = _state(order)
    # when
    response = client.post(EPAY_NOTIFY_URL, epay_notice(order, money=money))
    # then
    assert response.content == b"fail"
    assert _state(order) == before


def test_money_with_one_place_is_the_same_amount(client, make_product, make_epay_order,
                                                 django_capture_on_commit_callbacks):
    # given
    order = make_epay_order(product=make_product(keys=3, price="10.00"))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EPAY_NOTIFY_URL, epay_notice(order, money="10.0"))
    # then
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING


def test_a_status_report_before_the_success_does_not_shadow_it(client, make_product, make_epay_order,
                                                               django_capture_on_commit_callbacks):
    # given: the gateway reports the trade as waiting first, same trade_no
    order = make_epay_order(product=make_product(keys=3))
    waiting = client.post(EPAY_NOTIFY_URL, epay_notice(order, status="WAIT_BUYER_PAY"))
    order.refresh_from_db()
    assert (waiting.content, order.status) == (b"success", OrderStatus.PENDING_PAYMENT)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        paid = client.post(EPAY_NOTIFY_URL, epay_notice(order))
    # then
    assert paid.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert sorted(PaymentEvent.objects.values_list("external_id", "outcome")) == [
        ("2024010112000012345", PaymentEventOutcome.ACCEPTED),
        ("2024010112000012345#WAIT_BUYER_PAY", PaymentEventOutcome.IGNORED),
    ]


def test_a_notice_whose_paid_transaction_fails_is_kept_and_applied_later(client, make_product, make_epay_order,
                                                                          monkeypatch):
    # given: fulfilment fails inside the paid transaction (the payment-time
    # risk check, on the batch path and on the one-notice path alike)
    order = make_epay_order(product=make_product(keys=3))
    before = _state(order)

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("riskctl.services.assess._assess_many", broken)
    # when
    response = client.post(EPAY_NOTIFY_URL, epay_notice(order))
    # then: the notice was stored before the answer, the failed apply rolled
    # back alone and waits for its retry
    assert response.content == b"success"
    assert _state(order) == {**before, "notices": 1}
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.apply_attempts, event.apply_error) == (
        PaymentEventOutcome.RECEIVED, 1, "RuntimeError: database went away"
    )
    assert event.apply_after > timezone.now()
    # when: the cause is gone and the retry is due
    monkeypatch.undo()
    PaymentEvent.objects.filter(pk=event.pk).update(apply_after=timezone.now())
    payment_notices_apply()
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.ACCEPTED


def test_an_unknown_order_is_acknowledged_and_recorded_rejected(client, epay):
    # given
    params = {**NOTIFY_VECTOR, "sign": "1c0079e2c2f422beed3f6674a3b43d00"}
    # when
    response = client.post(EPAY_NOTIFY_URL, params)
    # then
    assert (response.status_code, response.content) == (200, b"success")
    assert PaymentEvent.objects.get().reason_code == "ORDER_UNKNOWN"


def test_epay_is_disabled_without_a_key(client, epay, make_product, make_epay_order):
    # given
    order = make_epay_order(product=make_product(keys=3))
    notice = epay_notice(order)
    before = _state(order)
    epay.EPAY_KEY = ""
    # when
    response = client.post(EPAY_NOTIFY_URL, notice)
    # then
    assert response.status_code == 404
    assert _state(order) == before
    with pytest.raises(ProviderUnknown):
        provider_get("epay")


def test_notify_accepts_only_get_and_post(client, epay):
    assert client.put(EPAY_NOTIFY_URL).status_code == 405
    assert client.delete(EPAY_NOTIFY_URL).status_code == 405


def test_settings_refuse_an_epay_merchant_id_without_a_key(tmp_path):
    # given: production settings with EPAY_PID but no EPAY_KEY
    base = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EPAY_", "STRIPE_"))}
    env.update(
        DEBUG="0", SECRET_KEY="x" * 50, KEY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        KEY_FINGERPRINT_PEPPER="pepper", ALLOWED_HOSTS="shop.example.com", SITE_URL="https://shop.example.com",
        DATABASE_URL="postgres://u:p@127.0.0.1:1/db", REDIS_URL="redis://127.0.0.1:1/0",
        KAMIDROP_DATA_DIR=str(tmp_path / "data"), EPAY_PID="1001", EPAY_GATEWAY="https://pay.example.com/submit.php",
        EMAIL_URL="smtp://shop:pw@smtp.example.com:587",
    )
    # when
    result = subprocess.run([sys.executable, "-c", "import shop.project.settings"], cwd=base, env=env,
                            capture_output=True, text=True, timeout=60)
    # then
    assert result.returncode == 1
    assert "ImproperlyConfigured: EPAY_KEY and EPAY_GATEWAY must be set when EPAY_PID is" in result.stderr


def test_a_signed_notice_for_less_than_the_price_is_recorded_rejected_and_pays_nothing(
        client, make_product, make_epay_order):
    # given
    order = make_epay_order(product=make_product(keys=2, price="30.00"))
    # when: correctly signed, but 29.99
    response = client.post(EPAY_NOTIFY_URL, epay_notice(order, money="29.99"))
    # then: acknowledged (resending changes nothing), rejected, nothing delivered
    assert response.content == b"success"
    order.refresh_from_db()
    event = PaymentEvent.objects.get()
    assert (event.outcome, event.reason_code) == (PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH")
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert not CardKey.objects.filter(order_line__order=order).exists()


def test_a_late_notice_for_an_expired_order_is_accepted_and_delivered(client, make_product, make_epay_order,
                                                                      django_capture_on_commit_callbacks):
    # given: the hold lapsed and the sweeper expired the order
    order = make_epay_order(product=make_product(keys=2))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EPAY_NOTIFY_URL, epay_notice(order))
    # then: money is never dropped
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert CardKey.objects.filter(order_line__order=order, status=CardKeyStatus.DELIVERED).count() == 1
