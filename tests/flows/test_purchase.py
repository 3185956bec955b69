"""A buyer's whole purchase over real HTTP: product page → checkout → sandbox
pay page → server-to-server notify from the worker → key on the order page and
in an email accepted by a real SMTP server."""

import email
import http.cookiejar
import json
import re
import urllib.parse
import urllib.request
from email import policy

import pytest

from delivery.models import Delivery, DeliveryStatus
from inventory.models import CardKey
from shop.models import Order, OrderEventType, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)


class Browser:
    """Just enough of a browser: cookies, redirects, CSRF tokens from forms."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self._url(path), timeout=30) as response:
            return response.geturl(), response.read().decode()

    def reveal(self, path: str, page: str) -> str:
        """Press "Show key" the way order.js does: a POST asking for JSON."""
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        request = urllib.request.Request(self._url(path), data=b"", method="POST",
                                         headers={"Accept": "application/json", "X-CSRFToken": token})
        with self.opener.open(request, timeout=30) as response:
            return json.loads(response.read())["key"]

    def submit(self, path: str, page: str, fields: dict) -> tuple[str, str]:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
        with self.opener.open(self._url(path), data=data, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"


@pytest.fixture
def shop_url(live_server, settings):
    settings.SITE_URL = live_server.url
    settings.SANDBOX_NOTIFY_URL = f"{live_server.url}/payments/sandbox/notify"
    return live_server.url


def test_buyer_pays_in_sandbox_and_gets_key_on_page_and_by_email(
    shop_url, make_product, run_worker, smtp_server
):
    # given
    product = make_product(keys=3, slug="game-card", name="Game Card 100", price="100.00")
    browser = Browser(shop_url)
    _, catalogue = browser.get("/")
    assert "Game Card 100" in catalogue and "3 in stock" in catalogue
    product_path = f"/p/{product.slug}/"
    _, product_page = browser.get(product_path)

    # when: checkout, then the sandbox pay page
    pay_url, pay_page = browser.submit(
        product_path, product_page, {"quantity": "2", "email": "Buyer@Example.com", "provider": "sandbox", "terms": "on"}
    )
    assert "/payments/sandbox/pay/" in pay_url
    assert "SANDBOX" in pay_page and "200.00 CNY" in pay_page
    order_url, order_page = browser.submit(pay_url, pay_page, {})
    order = Order.objects.get()
    assert order_url == f"{shop_url}/orders/{order.order_no}/"
    assert order.status == OrderStatus.PENDING_PAYMENT  # the browser did not pay; the gateway will
    assert "Awaiting payment" in order_page

    # the gateway's notify and the email are sent by the worker
    run_worker()

    # then: the order page shows the keys
    _, order_page = browser.get(order_url)
    order.refresh_from_db()
    keys = [k.secret for k in CardKey.objects.filter(order_line__order=order).order_by("id")]
    assert keys == ["GAME-CARD-KEY-00000", "GAME-CARD-KEY-00001"]
    assert order.status == OrderStatus.DELIVERED
    # the keys are on the page only behind "Show key"
    key_ids = list(CardKey.objects.filter(order_line__order=order).order_by("id").values_list("id", flat=True))
    for key in keys:
        assert key not in order_page
    assert [browser.reveal(f"/orders/{order.order_no}/keys/{pk}/reveal", order_page) for pk in key_ids] == keys
    assert "Everything delivered" in order_page
    # and the email arrived at the SMTP server with the keys in its body
    assert len(smtp_server.messages) == 1
    envelope = smtp_server.messages[0]
    assert envelope.rcpt_tos == ["Buyer@Example.com"]
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for key in keys:
        assert key in text and key in html
    assert [p for p in message.walk() if p.get_content_disposition() == "attachment"] == []
    # the emailed link opens the order page in a fresh browser
    link = re.search(r"(http://\S+/orders/\S+)", text).group(1)
    linked = Browser(shop_url)
    _, linked_page = linked.get(link)
    assert f"Order {order.order_no}" in linked_page
    assert linked.reveal(f"/orders/{order.order_no}/keys/{key_ids[0]}/reveal", linked_page) == keys[0]
    assert set(Delivery.objects.filter(order=order).values_list("channel", "status")) == {
        ("INBOX", DeliveryStatus.SENT), ("EMAIL", DeliveryStatus.SENT),
    }
    assert list(order.events.order_by("at", "id").values_list("type", flat=True)) == [
        OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.KEYS_RESERVED,
        OrderEventType.DELIVERY_SENT, OrderEventType.DELIVERY_SENT, OrderEventType.DELIVERED,
    ]


def test_order_page_is_not_shown_to_another_browser(shop_url, make_product, run_worker, smtp_server):
    # given: a paid order placed by one browser
    product = make_product(keys=1)
    buyer = Browser(shop_url)
    _, page = buyer.get(f"/p/{product.slug}/")
    pay_url, pay_page = buyer.submit(f"/p/{product.slug}/", page, {"quantity": "1", "email": "a@example.com", "terms": "on"})
    order_url, _ = buyer.submit(pay_url, pay_page, {})
    run_worker()
    # when: someone else opens the same address
    stranger = Browser(shop_url)
    with pytest.raises(urllib.error.HTTPError) as denied:
        stranger.get(order_url)
    # then
    assert denied.value.code == 404
    assert b"KEY-00000" not in denied.value.read()
