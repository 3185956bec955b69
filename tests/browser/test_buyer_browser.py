"""A buyer in a real (headless) Chromium on a phone-sized screen."""

import re

import pytest
from playwright.sync_api import expect

from inventory.models import CardKey
from shop.models import KeyReveal, Order, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)


def _buy(page, shop_url, product, *, quantity="1", query_password=""):
    page.goto(f"{shop_url}/")
    page.get_by_role("link", name=re.compile(product.name)).click()
    page.get_by_label("Quantity").fill(quantity)
    page.get_by_label("Email").fill("buyer@example.com")
    if query_password:
        page.get_by_label("Query password").fill(query_password)
    page.get_by_label(re.compile("I accept the terms")).check()
    page.get_by_role("button", name="Buy now").click()
    expect(page).to_have_url(re.compile(r"/payments/sandbox/pay/"))


def test_buy_on_a_phone_and_the_key_appears_without_a_reload(page, shop_url, make_product, run_worker, screenshot):
    # given
    product = make_product(keys=2, name="Game Card 100", price="100.00", usage_notes="Redeem at example.com/redeem.")
    assert page.viewport_size == {"width": 390, "height": 844}
    # when: buy and press Pay on the sandbox page
    _buy(page, shop_url, product)
    screenshot("pay")
    page.get_by_role("button", name=re.compile("Pay")).first.click()
    order = Order.objects.get()
    expect(page).to_have_url(f"{shop_url}/orders/{order.order_no}/")
    expect(page.locator("#order-status")).to_have_text(re.compile("Awaiting payment"))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    run_worker()  # the gateway's notify, then the email
    # then: the timeline and the keys arrive by themselves
    expect(page.locator("#timeline")).to_contain_text("Payment received")
    expect(page.locator("#timeline")).to_contain_text("Everything delivered")
    expect(page.get_by_role("button", name="Show key")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    key = CardKey.objects.get(order_line__order=order)
    expect(page.locator(".keys")).not_to_contain_text(key.secret)
    expect(page.locator(".usage")).to_contain_text("Redeem at example.com/redeem.")
    # when: Show key, then Copy
    page.get_by_role("button", name="Show key").click()
    expect(page.locator(f"#key-{key.pk}")).to_have_text(key.secret)
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator(".copied")).to_have_text("Copied")
    selected = page.evaluate("window.getSelection().toString() || null")
    screenshot("key-shown")
    # then: the reveal is on record and the copy put the key on the clipboard or in the selection
    assert KeyReveal.objects.filter(order=order, card_key=key).count() == 1
    assert selected in (None, key.secret)
    assert Order.objects.get().status == OrderStatus.DELIVERED


def test_switch_to_chinese(page, shop_url, make_product, screenshot):
    # given
    make_product(keys=1, name="Steam 100", name_zh="Steam 充值卡 100")
    page.goto(f"{shop_url}/")
    expect(page.locator("h1")).to_have_text("Digital goods, delivered in seconds")
    # when
    page.get_by_role("button", name="简体中文").click()
    # then
    expect(page.locator("h1")).to_have_text("虚拟商品，秒级自动发货")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(page.get_by_role("link", name=re.compile("Steam 充值卡 100"))).to_be_visible()
    screenshot("chinese")


def test_look_an_order_up_in_a_new_browser(page, chromium, shop_url, make_product, run_worker, screenshot):
    # given: an order bought with a query password, paid
    product = make_product(keys=1, name="Gift Card")
    _buy(page, shop_url, product, query_password="s3cret-pw")
    page.get_by_role("button", name=re.compile("Pay")).first.click()
    order = Order.objects.get()
    run_worker()
    chromium.clear_cookies()  # a different day, the session is gone
    # when: wrong password first, then the right one
    page.goto(f"{shop_url}/lookup/")
    page.get_by_label("Order number").fill(order.order_no)
    page.locator("#id_email").fill("buyer@example.com")
    page.get_by_label("Query password").fill("wrong-pw")
    page.get_by_role("button", name="Open my order").click()
    expect(page.get_by_role("alert")).to_have_text("We could not find an order with these details.")
    page.get_by_label("Order number").fill(order.order_no)
    page.locator("#id_email").fill("buyer@example.com")
    page.get_by_label("Query password").fill("s3cret-pw")
    page.get_by_role("button", name="Open my order").click()
    # then
    expect(page).to_have_url(f"{shop_url}/orders/{order.order_no}/")
    expect(page.get_by_role("button", name="Show key")).to_be_visible()
    screenshot("looked-up")
