"""A buyer pays on the shop's own pages with each payment method, against its
fake gateway on loopback, with the sandbox OFF (as in production): the
gateway's redirect, an auto-submitted form, or the shop's QR page; the signed
notify; the key on the order page."""

import re

import pytest
from playwright.sync_api import expect

from inventory.models import CardKey
from shop.models import Order
from tests.fakes.alipay import FakeAlipay
from tests.fakes.epay import FakeEpay
from tests.fakes.epusdt import FakeEpusdt
from tests.fakes.stripe import FakeStripe
from tests.fakes.wechat import FakeWechatPay

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


@pytest.fixture
def alipay_gateway(settings):
    fake = FakeAlipay()
    settings.ALIPAY_APP_ID, settings.ALIPAY_GATEWAY = fake.app_id, fake.gateway_url
    settings.ALIPAY_PRIVATE_KEY, settings.ALIPAY_PUBLIC_KEY = fake.app_private_pem, fake.alipay_public_base64
    settings.ALIPAY_CHANNEL = "f2f"
    yield fake
    fake.close()


def test_pay_with_alipay_face_to_face_by_scanning_the_qr_page(page, production, alipay_gateway, make_product,
                                                              screenshot):
    # given
    product = make_product(keys=2, name="Game Card 88", price="88.00")
    # when: buy; the shop's own pay page shows the QR code
    _checkout(page, production, product)
    order = Order.objects.get()
    payment = order.payments.get()
    expect(page).to_have_url(f"{production}/payments/pay/{payment.reference}/")
    expect(page.locator(".qr svg")).to_be_visible()
    expect(page.locator("#pay-amount")).to_have_text("88.00 CNY")
    expect(page.get_by_role("link", name="Open Alipay on this phone")).to_have_attribute(
        "href", re.compile(r"^https://qr\.alipay\.com/"))
    expect(page.locator(".countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))
    screenshot("qr")
    # when: the buyer scans and pays in the Alipay app
    assert alipay_gateway.pay(payment.reference) == (200, "success")
    # then: the page moves to the order by itself
    _key_on_the_order_page(page, production, order)


def test_pay_with_alipay_page_pay_through_an_auto_submitted_form(page, production, alipay_gateway, settings,
                                                                 make_product):
    # given
    settings.ALIPAY_CHANNEL = "page"
    product = make_product(keys=2, name="Licence", price="199.00")
    # when: buy: the shop posts the signed form to Alipay by itself; pay at the cashier
    _checkout(page, production, product)
    expect(page.locator("#pay")).to_be_visible()
    page.locator("#pay").click()
    # then
    _key_on_the_order_page(page, production, Order.objects.get())


@pytest.fixture
def wechat_gateway(settings):
    fake = FakeWechatPay()
    settings.WECHATPAY_MCHID, settings.WECHATPAY_APPID = fake.mchid, fake.appid
    settings.WECHATPAY_SERIAL, settings.WECHATPAY_PRIVATE_KEY = fake.merchant_serial, fake.merchant_private_pem
    settings.WECHATPAY_APIV3_KEY, settings.WECHATPAY_PLATFORM_PUBLIC_KEY = fake.apiv3_key, fake.platform_public_pem
    settings.WECHATPAY_PLATFORM_KEY_ID, settings.WECHATPAY_GATEWAY = fake.platform_key_id, fake.url
    yield fake
    fake.close()


def test_pay_with_wechat_native_by_scanning_the_qr_page(page, production, wechat_gateway, make_product, screenshot):
    product = make_product(keys=2, name="Membership 30d", price="30.00")
    _checkout(page, production, product)
    order = Order.objects.get()
    payment = order.payments.get()
    expect(page.locator(".qr svg")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Pay with WeChat Pay")
    screenshot("qr")
    assert wechat_gateway.pay(payment.reference)[0] == 204
    _key_on_the_order_page(page, production, order)


@pytest.fixture
def usdt_gateway(settings):
    fake = FakeEpusdt(token="BROWSER-EPUSDT-TOKEN", rate="7.00")
    settings.EPUSDT_GATEWAY, settings.EPUSDT_TOKEN, settings.EPUSDT_RATE = fake.url, "BROWSER-EPUSDT-TOKEN", None
    settings.EPUSDT_QUERY_BEFORE_CREDIT = True  # the production default: the trade is confirmed at check-status
    yield fake
    fake.close()


def test_pay_with_usdt_shows_the_address_and_the_exact_amount(page, production, usdt_gateway, make_product,
                                                              screenshot):
    product = make_product(keys=2, name="Gift Card 70", price="70.00")
    _checkout(page, production, product)
    order = Order.objects.get()
    payment = order.payments.get()
    expect(page.locator("#pay-amount")).to_have_text("10.00 USDT")
    expect(page.locator("#pay-address")).to_have_text(usdt_gateway.trades[payment.reference]["token"])
    screenshot("usdt")
    assert usdt_gateway.pay(payment.reference) == (200, "ok")
    _key_on_the_order_page(page, production, order)


@pytest.fixture
def stripe_gateway(settings, production):
    fake = FakeStripe(secret_key="sk_test_browser", webhook_secret="whsec_browser")
    fake.webhook_url = f"{production}/payments/stripe/webhook"
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = fake.secret_key, fake.webhook_secret
    settings.STRIPE_API_BASE = fake.url
    yield fake
    fake.close()


def test_pay_by_card_through_stripe_checkout(page, production, stripe_gateway, make_product):
    product = make_product(keys=2, name="Pro Licence", price="25.00", currency="USD")
    _checkout(page, production, product)
    expect(page.locator("#amount")).to_have_text("2500")
    page.locator("#pay").click()
    assert stripe_gateway.notify_replies[0][0] == 200
    _key_on_the_order_page(page, production, Order.objects.get())


def test_the_buyer_picks_among_every_method_in_their_language(page, production, epay_gateway, alipay_gateway,
                                                              wechat_gateway, usdt_gateway, make_product,
                                                              screenshot):
    # given: five methods, the buyer on a phone
    product = make_product(keys=3, name="Game Card 100", name_zh="游戏点卡 100", price="100.00")
    page.goto(f"{production}/p/{product.slug}/")
    # then: each method with its icon, the first chosen
    names = page.locator(".method-name").all_text_contents()
    assert names == ["Alipay", "Alipay", "WeChat Pay", "USDT (TRC20)"]
    screenshot("methods-en")
    page.get_by_role("button", name="简体中文").click()
    assert page.locator(".method-name").all_text_contents() == ["支付宝", "支付宝", "微信支付", "USDT（TRC20）"]
    screenshot("methods-zh")
    # when: the buyer picks USDT
    page.get_by_role("radio", name="USDT（TRC20）").check()
    page.get_by_label(re.compile("邮箱|Email")).fill("buyer@example.com")
    page.locator("input[name=terms]").check()
    page.locator("button[name=buy]").click()
    # then
    expect(page.locator("#pay-address")).to_be_visible()
    assert Order.objects.get().payments.get().provider == "usdt"
