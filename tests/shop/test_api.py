"""JSON API v1: the contract integrators rely on (DESIGN.md)."""

import json

import pytest

from shop.models import Order, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


def _create(client, **body):
    return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")


def test_products_lists_price_and_free_stock(client, make_product):
    # given
    make_product(keys=4, slug="a-card", name="A card", price="12.50")
    make_product(keys=0, slug="b-card", name="B card")
    make_product(keys=2, slug="hidden", name="Hidden", active=False)
    # when
    response = client.get("/api/v1/products")
    # then
    assert response.status_code == 200
    # (the fields added since, names per language, sales, pictures: tests/shop/test_catalogue_pages.py)
    fields = ("slug", "name", "price", "currency", "stock")
    assert [{name: item[name] for name in fields} for item in response.json()] == [
        {"slug": "a-card", "name": "A card", "price": "12.50", "currency": "CNY", "stock": 4},
        {"slug": "b-card", "name": "B card", "price": "10.00", "currency": "CNY", "stock": 0},
    ]


def test_create_order_returns_token_and_pay_url_and_holds_stock(client, make_product):
    # given
    make_product(keys=3, slug="a-card", price="12.50")
    # when
    response = _create(client, product="a-card", quantity=2, email="x@example.com")
    # then
    assert response.status_code == 201
    body = response.json()
    order = Order.objects.get()
    assert body == {
        "order_no": order.order_no, "token": body["token"], "status": "PENDING_PAYMENT",
        "amount": "25.00", "currency": "CNY",
        "pay_url": f"http://testserver/payments/sandbox/pay/{order.order_no}/",
        "pay": {"kind": "REDIRECT", "method": "sandbox", "amount": "25.00", "currency": "CNY"},
    }
    assert len(body["token"]) >= 32 and body["token"] not in order.token_hash
    assert client.get("/api/v1/products").json()[0]["stock"] == 1


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"quantity": 1, "email": "x@example.com"}, 400, "FIELD_REQUIRED"),
        ({"product": "a-card", "quantity": "2", "email": "x@example.com"}, 400, "QUANTITY_INVALID"),
        ({"product": "a-card", "quantity": 0, "email": "x@example.com"}, 400, "QUANTITY_INVALID"),
        ({"product": "a-card", "quantity": 11, "email": "x@example.com"}, 400, "QUANTITY_INVALID"),
        ({"product": "a-card", "quantity": 1, "email": "not-an-email"}, 400, "EMAIL_INVALID"),
        ({"product": "a-card", "quantity": 1, "email": "x@example.com", "phone": "call me"}, 400, "PHONE_INVALID"),
        ({"product": "nope", "quantity": 1, "email": "x@example.com"}, 404, "PRODUCT_NOT_FOUND"),
        ({"product": "a-card", "quantity": 4, "email": "x@example.com"}, 409, "OUT_OF_STOCK"),
        ({"product": "a-card", "quantity": 1, "email": "x@example.com", "provider": "paypal"}, 400, "PROVIDER_UNKNOWN"),
        ({"product": ["a-card"], "quantity": 1, "email": "x@example.com"}, 400, "FIELD_INVALID"),
    ],
)
def test_create_order_refuses_bad_input_with_a_code_and_creates_nothing(client, make_product, body, status, code):
    # given
    make_product(keys=3, slug="a-card")
    # when
    response = _create(client, **body)
    # then
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and len(error["ref"]) == 12
    assert Order.objects.count() == 0


def test_create_order_refuses_non_json(client, db):
    response = client.post("/api/v1/orders", data="product=x", content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "BAD_JSON")


def test_read_order_needs_the_bearer_token(client, make_product):
    # given
    make_product(keys=3, slug="a-card")
    order_no = _create(client, product="a-card", quantity=1, email="x@example.com").json()["order_no"]
    # when
    missing = client.get(f"/api/v1/orders/{order_no}")
    wrong = client.get(f"/api/v1/orders/{order_no}", HTTP_AUTHORIZATION="Bearer wrong")
    unknown = client.get("/api/v1/orders/00000000000000", HTTP_AUTHORIZATION="Bearer wrong")
    # then
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "AUTH_REQUIRED")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "ORDER_NOT_FOUND")
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_read_order_shows_keys_only_once_delivered(client, make_product, django_capture_on_commit_callbacks):
    # given
    make_product(keys=3, slug="a-card")
    created = _create(client, product="a-card", quantity=2, email="x@example.com").json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {created['token']}"}
    pending = client.get(f"/api/v1/orders/{created['order_no']}", **auth).json()
    order = Order.objects.get()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    paid = client.get(f"/api/v1/orders/{created['order_no']}", **auth).json()
    # then
    assert pending["status"] == OrderStatus.PENDING_PAYMENT and pending["keys"] == []
    assert paid["status"] == OrderStatus.FULFILLING
    assert paid["keys"] == ["A-CARD-KEY-00000", "A-CARD-KEY-00001"]
    assert (paid["quantity"], paid["amount"], paid["currency"]) == (2, "20.00", "CNY")
    assert [e["type"] for e in paid["events"]] == ["CREATED", "PAID", "KEYS_RESERVED", "DELIVERY_SENT"]


def test_order_creation_is_rate_limited_per_buyer(client, make_product):
    # given: the default CHECKOUT_RATE_PER_BUYER (20/m); one buyer, one address, no device
    # (many buyers behind one address: tests/shop/test_checkout_rate_limits.py)
    make_product(keys=100, slug="a-card")
    # when
    codes = [_create(client, product="a-card", quantity=1, email="x@example.com").status_code for _ in range(21)]
    # then
    assert codes[:20] == [201] * 20
    assert codes[20] == 429
    limited = _create(client, product="a-card", quantity=1, email="x@example.com")
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert Order.objects.count() == 20


def test_payment_methods_lists_what_a_buyer_may_use_for_a_product(client, make_product, epay, settings):
    # given: the sandbox, and an EPay merchant limited to orders of 20 or more
    from payments.models import PaymentMethod
    from payments.services.methods import payment_method_save

    make_product(keys=3, slug="cheap", price="5.00")
    payment_method_save(method=PaymentMethod(code="epay-big", provider="epay", channel="wxpay", name="WeChat Pay",
                                             name_zh="微信支付", icon="wechat", merchant_id="2002",
                                             gateway_url="https://pay2.example.com/submit.php", position=5,
                                             fee_percent="1.5", min_amount="20.00"),
                        credentials={"key": "K2"})
    # when
    every = client.get("/api/v1/payment-methods").json()
    for_cheap = client.get("/api/v1/payment-methods?product=cheap").json()
    # then
    assert [m["id"] for m in every] == ["epay-big", "epay", "sandbox"]
    assert every[0] == {"id": "epay-big", "name": "WeChat Pay", "provider": "epay", "channel": "wxpay",
                        "icon": "wechat", "fee": "+1.5%"}
    assert [m["id"] for m in for_cheap] == ["epay", "sandbox"]
    assert client.get("/api/v1/payment-methods?product=nope").json()["error"]["code"] == "PRODUCT_NOT_FOUND"


def test_an_order_with_a_method_not_offered_for_it_is_refused_before_any_row(client, make_product, epay):
    # given: an EPay merchant for other products only
    from payments.models import PaymentMethod
    from payments.services.methods import payment_method_save

    make_product(keys=3, slug="a-card", price="12.50")
    other = make_product(keys=1)
    method = payment_method_save(method=PaymentMethod(code="epay-vip", provider="epay", channel="alipay",
                                                      name="Alipay", merchant_id="2002",
                                                      gateway_url="https://pay2.example.com/submit.php"),
                                 credentials={"key": "K2"})
    method.products.set([other])
    # when
    response = _create(client, product="a-card", quantity=1, email="x@example.com", provider="epay-vip")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "PROVIDER_UNKNOWN"
    assert Order.objects.count() == 0
