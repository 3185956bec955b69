"""Every callback endpoint, fed random parameters and bodies (hypothesis):
never a 500, never "success" for garbage, and the database unchanged. And
callbacks are never rate-limited."""

import json
import time

import pytest
import stripe
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from inventory.models import CardKey
from payments.models import Payment, PaymentEvent, PaymentEventOutcome
from payments.providers.epay import epay_sign
from payments.providers.sandbox import sandbox_sign
from shop.models import Order, OrderEvent
from tests.conftest import NOTIFY_URL, sandbox_notice
from tests.payments.conftest import EPAY_KEY, EPAY_NOTIFY_URL, epay_notice

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

STRIPE_URL = "/payments/stripe/webhook"
WEBHOOK_SECRET = "whsec_test_fuzz"
FUZZ = hypothesis_settings(
    max_examples=120, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FIELD_NAMES = ["pid", "trade_no", "out_trade_no", "type", "name", "money", "amount", "currency", "trade_status",
               "param", "sign", "sign_type", "id", "object"]
any_text = st.text(max_size=80)
nasty_text = st.one_of(
    any_text,
    st.sampled_from(["", "\x00", "NaN", "1e9", "-1", "0.001", "9" * 200, "TRADE_SUCCESS", "SUCCESS", "CNY",
                     "null", "[]", "{}", "%00", "' OR 1=1 --"]),
)
# Values that pass the earlier checks, so the later ones get exercised too.
good_or_nasty = {
    "amount": st.one_of(nasty_text, st.sampled_from(["10.00", "10", "0.01", "99999.99"])),
    "currency": st.one_of(nasty_text, st.just("CNY")),
    "status": st.one_of(nasty_text, st.sampled_from(["SUCCESS", "TRADE_SUCCESS"])),
    "id": st.one_of(nasty_text, st.text(min_size=1, max_size=100), st.just("T9999999999999")),
}
params = st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), any_text), nasty_text, max_size=12)
content_types = st.sampled_from([
    "application/x-www-form-urlencoded", "application/json", "multipart/form-data", "multipart/form-data; boundary=x",
    "text/plain", "application/octet-stream", "",
])


@pytest.fixture
def endpoints(settings, epay, make_product, make_unpaid_order):
    """All three providers on, and one unpaid order per provider to be left alone."""
    settings.STRIPE_SECRET_KEY = "sk_test_fuzz"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    product = make_product(keys=5)
    orders = [make_unpaid_order(product=product) for _ in range(3)]
    Payment.objects.filter(order=orders[1]).update(provider="epay")
    Payment.objects.filter(order=orders[2]).update(provider="stripe")
    return orders


def _snapshot():
    return {
        "orders": sorted(Order.objects.values_list("id", "status", "paid_at")),
        "payments": sorted(Payment.objects.values_list("id", "status", "external_id")),
        "keys": sorted(CardKey.objects.values_list("id", "status", "order_line_id")),
        "order_events": OrderEvent.objects.count(),
        "notices": PaymentEvent.objects.count(),
    }


def _is_failure(response) -> bool:
    return 400 <= response.status_code < 500 and response.content != b"success"


@FUZZ
@given(url=st.sampled_from([NOTIFY_URL, EPAY_NOTIFY_URL, STRIPE_URL]), method=st.sampled_from(["get", "post"]),
       data=params)
def test_random_parameters_are_refused_and_change_nothing(client, endpoints, url, method, data):
    # given
    before = _snapshot()
    # when
    response = getattr(client, method)(url, data)
    # then
    assert _is_failure(response), (response.status_code, response.content)
    assert _snapshot() == before


@FUZZ
@given(url=st.sampled_from([NOTIFY_URL, EPAY_NOTIFY_URL, STRIPE_URL]), body=st.binary(max_size=400),
       content_type=content_types, signature=st.one_of(st.none(), any_text, st.just("t=1,v1=abc")))
def test_random_bodies_are_refused_and_change_nothing(client, endpoints, url, body, content_type, signature):
    # given
    before = _snapshot()
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    # when
    response = client.generic("POST", url, body, content_type=content_type, **headers)
    # then
    assert _is_failure(response), (response.status_code, response.content)
    assert _snapshot() == before


def _orders_untouched(before: dict) -> None:
    after = _snapshot()
    assert {k: after[k] for k in ("orders", "payments", "keys", "order_events")} == {
        k: before[k] for k in ("orders", "payments", "keys", "order_events")
    }
    # notices with a valid sign but nothing true in them are kept as evidence, never as money
    assert not PaymentEvent.objects.exclude(
        outcome__in=[PaymentEventOutcome.REJECTED, PaymentEventOutcome.IGNORED]
    ).exists()


@FUZZ
@given(extra=params, method=st.sampled_from(["get", "post"]), fields=st.fixed_dictionaries({
    "pid": st.one_of(nasty_text, st.just("1001")), "trade_no": good_or_nasty["id"],
    "out_trade_no": good_or_nasty["id"], "money": good_or_nasty["amount"], "trade_status": good_or_nasty["status"],
}))
def test_correctly_signed_random_epay_notices_never_break_the_callback(client, endpoints, extra, method, fields):
    # given: random fields, correctly signed, for no real order
    before = _snapshot()
    data = {**{k.replace("\x00", ""): v for k, v in extra.items()}, **fields}
    data.pop("sign_type", None)
    data["sign"] = epay_sign(data, EPAY_KEY)
    # when
    response = getattr(client, method)(EPAY_NOTIFY_URL, data)
    # then
    assert response.status_code < 500
    assert response.content in (b"success", b"fail")
    _orders_untouched(before)


@FUZZ
@given(fields=st.fixed_dictionaries({
    "trade_no": good_or_nasty["id"], "out_trade_no": good_or_nasty["id"], "amount": good_or_nasty["amount"],
    "currency": good_or_nasty["currency"], "trade_status": good_or_nasty["status"],
}))
def test_correctly_signed_random_sandbox_notices_never_break_the_callback(client, endpoints, fields):
    # given
    before = _snapshot()
    fields["sign"] = sandbox_sign(fields, django_settings.SANDBOX_SECRET)
    # when
    response = client.post(NOTIFY_URL, fields)
    # then
    assert response.status_code < 500
    _orders_untouched(before)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=20,
)
stripe_events = st.fixed_dictionaries({
    "id": st.one_of(st.text(min_size=1, max_size=90), json_values),
    "object": st.just("event"),
    "type": st.sampled_from(["checkout.session.completed", "checkout.session.async_payment_succeeded",
                             "charge.refunded", "charge.dispute.created", "customer.created"]),
    "data": st.fixed_dictionaries({"object": st.dictionaries(
        st.sampled_from(["id", "client_reference_id", "amount_total", "amount", "amount_refunded", "currency",
                         "payment_status", "payment_intent", "metadata", "refunded", "reason"]),
        json_values, max_size=10,
    )}),
})


@FUZZ
@given(event=stripe_events)
def test_correctly_signed_random_stripe_events_never_break_the_webhook(client, endpoints, event):
    # given: signed with the SDK's own signing code
    before = _snapshot()
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET, timestamp=int(time.time()))
    # when
    response = client.post(STRIPE_URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    # then
    assert response.status_code < 500
    _orders_untouched(before)


def test_callbacks_are_never_rate_limited(client, make_product, make_unpaid_order, epay,
                                          django_capture_on_commit_callbacks):
    # given: far more notifies from one address than any rate limit on the site allows
    order = make_unpaid_order(product=make_product(keys=2))
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(NOTIFY_URL, sandbox_notice(order), REMOTE_ADDR="203.0.113.9")
    epay_order = make_unpaid_order(product=make_product(keys=2))
    Payment.objects.filter(order=epay_order).update(provider="epay")
    # when
    replies = [client.post(NOTIFY_URL, sandbox_notice(order), REMOTE_ADDR="203.0.113.9").status_code
               for _ in range(100)]
    forged = [client.get(EPAY_NOTIFY_URL, {**epay_notice(epay_order), "sign": "0" * 32},
                         REMOTE_ADDR="203.0.113.9").status_code for _ in range(100)]
    # then
    assert first.content == b"success"
    assert replies == [200] * 100
    assert forged == [400] * 100
