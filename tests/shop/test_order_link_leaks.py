"""The signed order link never leaves the shop: not in what any payment
provider is sent (return / notify / redirect URLs, form fields, API bodies),
not in either access log."""

import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from gunicorn.config import Config

from payments.models import Payment
from shop.access import order_link_sign
from shop.project.accesslog import RedactingLogger
from shop.templatetags.orderlinks import order_link
from tests.fakes.alipay import FakeAlipay
from tests.fakes.epay import FakeEpay
from tests.fakes.epusdt import FakeEpusdt
from tests.fakes.stripe import FakeStripe
from tests.fakes.wechat import FakeWechatPay

pytestmark = pytest.mark.django_db

# A query parameter named s or t (the signed link, the access token) in any URL or form body.
SECRET_PARAMETER = re.compile(r"(?:^|[?&])[st]=")


@pytest.fixture
def every_provider(settings):
    """Every payment plug-in configured against its fake gateway on loopback."""
    settings.SITE_URL = "https://shop.example.com"
    epay, alipay, wechat = FakeEpay(pid="1001", key="LEAK-EPAY-KEY"), FakeAlipay(), FakeWechatPay()
    usdt, stripe = FakeEpusdt(token="LEAK-EPUSDT-TOKEN", rate="7.00"), FakeStripe(secret_key="sk_test_leak")
    settings.EPAY_PID, settings.EPAY_KEY, settings.EPAY_GATEWAY, settings.EPAY_TYPE = (
        "1001", "LEAK-EPAY-KEY", epay.submit_url, "alipay")
    settings.ALIPAY_APP_ID, settings.ALIPAY_GATEWAY = alipay.app_id, alipay.gateway_url
    settings.ALIPAY_PRIVATE_KEY, settings.ALIPAY_PUBLIC_KEY = alipay.app_private_pem, alipay.alipay_public_base64
    settings.ALIPAY_CHANNEL = "page"
    settings.WECHATPAY_MCHID, settings.WECHATPAY_APPID = wechat.mchid, wechat.appid
    settings.WECHATPAY_SERIAL, settings.WECHATPAY_PRIVATE_KEY = wechat.merchant_serial, wechat.merchant_private_pem
    settings.WECHATPAY_APIV3_KEY, settings.WECHATPAY_PLATFORM_PUBLIC_KEY = wechat.apiv3_key, wechat.platform_public_pem
    settings.WECHATPAY_PLATFORM_KEY_ID, settings.WECHATPAY_GATEWAY = wechat.platform_key_id, wechat.url
    settings.EPUSDT_GATEWAY, settings.EPUSDT_TOKEN, settings.EPUSDT_RATE = usdt.url, "LEAK-EPUSDT-TOKEN", None
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = stripe.secret_key, "whsec_leak"
    settings.STRIPE_API_BASE = stripe.url
    fakes = [epay, alipay, wechat, usdt, stripe]
    yield fakes
    for fake in fakes:
        fake.close()


def _texts_sent(fakes, payments) -> list[str]:
    """Everything the shop handed to a provider or the buyer's way there."""
    texts = []
    for fake in fakes:
        for request in fake.requests:
            texts += [request.path, "&".join(f"{k}={v}" for k, v in request.query.items()),
                      request.body.decode("utf-8", "replace")]
    for payment in payments:
        action = payment.pay_action or {}
        texts += [str(action.get("url", "")), str(action.get("app_url", "")), str(action.get("qr", ""))]
        texts += [f"{k}={v}" for k, v in (action.get("fields") or {}).items()]
    return texts


def test_no_pay_request_of_any_provider_carries_the_order_link(client, every_provider, make_product,
                                                                make_unpaid_order):
    # given: the buyer opened the order through its signed link, then pays it every way there is
    order = make_unpaid_order(product=make_product(keys=2, slug="leak", price="70.00"))
    Payment.objects.filter(order=order).delete()
    order.hold_expires_at = order.created_at + timedelta(minutes=15)
    order.save(update_fields=["hold_expires_at"])
    signature = order_link_sign(order.order_no, order.link_version)
    link = urlsplit(order_link(order))
    assert client.get(f"{link.path}?{link.query}").status_code == 302
    methods = ["epay", "alipay", "wechat", "usdt", "stripe"]
    # when
    locations = []
    for method in methods:
        response = client.post(f"/orders/{order.order_no}/pay", {"method": method})
        assert response.status_code == 302 and response["Location"] != f"/orders/{order.order_no}/", method
        locations.append(response["Location"])
    # then: each method really opened a payment at its gateway ...
    payments = list(Payment.objects.filter(order=order).order_by("id"))
    assert sorted(p.provider for p in payments) == sorted(methods)
    # EPay and Alipay's page pay hand the browser a URL or a signed form; the others are called by the shop
    assert all(fake.requests for fake in every_provider[2:])
    sent = _texts_sent(every_provider, payments) + locations
    # ... and nothing it was sent holds the signed link or a token parameter
    assert any(f"/orders/{order.order_no}/" in text for text in sent)  # the return URLs are there, clean
    for text in sent:
        assert signature not in text
        for url in re.findall(r"https?://[^\s\"'<>]+", text) + [text]:
            assert not SECRET_PARAMETER.search(urlsplit(url).query or ""), url


def test_the_shops_request_log_never_records_the_order_link(client, make_product, make_unpaid_order, caplog):
    # given
    order = make_unpaid_order(product=make_product(keys=1))
    link = urlsplit(order_link(order))
    signature = order_link_sign(order.order_no, order.link_version)
    # when
    with caplog.at_level(logging.INFO, logger="shop.request"):
        assert client.get(f"{link.path}?{link.query}", HTTP_REFERER=order_link(order)).status_code == 302
    # then
    lines = [record.getMessage() for record in caplog.records if record.name == "shop.request"]
    assert len(lines) == 1 and lines[0].startswith(f"GET /orders/{order.order_no}/")
    assert signature not in caplog.text


class _Response:
    status = "302 Found"
    sent = 0
    headers = [("Location", "/orders/x/")]


class _Request:
    def __init__(self, headers):
        self.headers = headers


def test_gunicorn_access_log_atoms_never_hold_the_order_link(db):
    # given: a request for the order link, with it as Referer too
    order_no = "26120400000001"
    signature = order_link_sign(order_no, 3)
    target = f"/orders/{order_no}/?s={signature}&lang=en"
    referer = f"https://shop.example.com{target}"
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": target, "PATH_INFO": f"/orders/{order_no}/",
               "QUERY_STRING": f"s={signature}&lang=en", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_REFERER": referer,
               "REMOTE_ADDR": "203.0.113.9", "REQUEST_URI": target}
    # when
    atoms = RedactingLogger(Config()).atoms(_Response(), _Request([("REFERER", referer)]), environ,
                                            timedelta(milliseconds=5))
    # then: not in the request line, the query, the Referer, nor any header or environ atom a format may name
    assert atoms["r"] == f"GET /orders/{order_no}/?s=[redacted]&lang=en HTTP/1.1"
    assert all(signature not in str(value) for value in atoms.values())
