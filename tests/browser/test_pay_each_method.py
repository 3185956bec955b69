"""A buyer pays on the shop's own pages with each payment method, against its
fake gateway on loopback, with the sandbox OFF (as in production): the
gateway's redirect, an auto-submitted form, or the shop's QR page; the signed
notify; the key on the order page."""

import re

import pytest
from playwright.sync_api import expect

from inventory.models import CardKey
from shop.models import Order
from tests.fakes.epay import FakeEpay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def production(settings, shop_url):
    """The sandbox off, as in any production deploy."""
    settings.SANDBOX_ENABLED = False
    return shop_url


def _checkout(page, shop_url, product, *, method_name: str | None = None):
    page.goto(f"{shop_url}/p/{product.slug}/")
    page.get_by_label("Email").fill("buyer@example.com")
    if method_name:
        page.get_by_role("radio", name=method_name).check()
    page.get_by_label(re.compile("I accept the terms")).check()
    page.get_by_role("button", name="Buy now").click()


def _key_on_the_order_page(page, shop_url, order):
    expect(page).to_have_url(f"{shop_url}/orders/{order.order_no}/")
    expect(page.get_by_role("button", name="Show key")).to_be_visible()
    key = CardKey.objects.get(order_line__order=order)
    page.get_by_role("button", name="Show key").click()
    expect(page.locator(f"#key-{key.pk}")).to_have_text(key.secret)


@pytest.fixture
def epay_gateway(settings):
    fake = FakeEpay(pid="1001", key="BROWSER-EPAY-KEY")
    settings.EPAY_PID, settings.EPAY_KEY, settings.EPAY_GATEWAY = "1001", "BROWSER-EPAY-KEY", fake.submit_url
    settings.EPAY_TYPE = "alipay"
    settings.EPAY_QUERY_BEFORE_CREDIT = True  # the production default: the notice is confirmed at api.php
    yield fake
    fake.close()


def test_pay_with_epay_through_its_cashier(page, production, epay_gateway, make_product, screenshot):
    # given: EPay is the only method: no choice to make
    product = make_product(keys=2, name="Game Card 50", price="50.00")
    # when: buy on the product page, land at the gateway, pay there
    _checkout(page, production, product)
    expect(page).to_have_url(re.compile(re.escape(epay_gateway.submit_url)))
    expect(page.locator("#amount")).to_have_text("50.00")
    screenshot("gateway")
    page.locator("#pay").click()
    # then: the gateway's signed notify paid the order; the buyer is back with the key
    order = Order.objects.get()
    assert epay_gateway.notify_replies == [(200, "success")]
    _key_on_the_order_page(page, production, order)
    screenshot("key")
