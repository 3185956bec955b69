"""The review desk in a real Chromium: an order flagged by a rule, bought
through the shop, decided from its desk page (approve, reject, reject and
block), the shared-IP warning, and the desk in English, Chinese and on a phone."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from inventory.models import CardKey, CardKeyStatus
from riskctl.models import ListEntry, ReviewItem, Rule
from shop.models import Order, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "review-desk-owner-pw-1"


@pytest.fixture
def flagged(make_product):
    """A product, and a rule that sends every order of it to review."""
    Rule.objects.create(code="check-every-order", description="Check every order", feature="quantity",
                        operator=">=", threshold=Decimal("1"), action="REVIEW")
    return make_product(keys=3, name="Game Card 100", price="100.00")


def _buy(page, shop_url, product, run_worker, email: str) -> Order:
    """Buy one key through the shop and pay on the sandbox page: the rule holds it."""
    page.goto(f"{shop_url}/")
    page.get_by_role("link", name=re.compile(product.name)).click()
    page.get_by_label("Quantity").fill("1")
    page.get_by_label("Email").fill(email)
    page.get_by_label(re.compile("I accept the terms")).check()
    page.get_by_role("button", name="Buy now").click()
    expect(page).to_have_url(re.compile(r"/payments/sandbox/pay/"))
    page.get_by_role("button", name=re.compile("Pay")).first.click()
    order = Order.objects.get(email=email)
    expect(page).to_have_url(f"{shop_url}/orders/{order.order_no}/")
    run_worker()  # the gateway's notify
    order.refresh_from_db()
    assert order.status == OrderStatus.IN_REVIEW
    return order


def _log_in(page, shop_url):
    get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password=PASSWORD)
    page.goto(f"{shop_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{shop_url}/admin/")


def _desk_url(shop_url, order) -> str:
    return f"{shop_url}/admin/riskctl/reviewitem/{ReviewItem.objects.get(order=order).pk}/change/"


def test_approve_from_the_desk_on_a_phone(page, shop_url, flagged, run_worker, screenshot):
    # given: an order held by the rule, the owner on the admin home on a phone
    order = _buy(page, shop_url, flagged, run_worker, "first@example.com")
    assert page.viewport_size["width"] == 390
    _log_in(page, shop_url)
    clicks = 0
    # when: home → the review queue → the order → Approve
    page.get_by_role("link", name=re.compile("^Review queue")).first.click()
    clicks += 1
    expect(page.locator("#content h1")).to_contain_text("Review queue: 1 waiting")
    page.get_by_role("link", name=order.order_no).click()
    clicks += 1
    expect(page.locator("#content h1")).to_have_text(f"Review: order {order.order_no}")
    expect(page.locator("#kd-reasons")).to_contain_text("1 key in this order")
    screenshot("desk-en-390px")
    page.locator("#id_approve-note").fill("known buyer")
    page.get_by_role("button", name="Approve and deliver").click()
    clicks += 1
    # then: back to the queue with the message; the keys go out
    expect(page.locator(".messagelist")).to_contain_text(f"Order {order.order_no} approved")
    run_worker()
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert CardKey.objects.get(order_line__order=order).status == CardKeyStatus.DELIVERED
    assert clicks == 3
    print(f"clicks from the admin home to a decided order on a phone: {clicks}")


def test_reject_from_the_desk_refunds(page, shop_url, flagged, run_worker):
    # given
    order = _buy(page, shop_url, flagged, run_worker, "second@example.com")
    key = CardKey.objects.get(order_line__order=order)
    _log_in(page, shop_url)
    page.goto(_desk_url(shop_url, order))
    # when
    page.locator("#id_reject-note").fill("card reported stolen")
    page.get_by_role("button", name="Reject and refund").click()
    # then
    expect(page.locator(".messagelist")).to_contain_text(f"Order {order.order_no} rejected")
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    key.refresh_from_db()
    assert (key.status, key.order_line_id) == (CardKeyStatus.AVAILABLE, None)
    assert not ListEntry.objects.exists()


def test_reject_and_block_warns_about_the_shared_ip(page, chromium, shop_url, flagged, run_worker, screenshot):
    # given: two buyers ordered from the same IP (127.0.0.1)
    _buy(page, shop_url, flagged, run_worker, "other@example.com")
    order = _buy(page, shop_url, flagged, run_worker, "fraud@example.com")
    page.set_viewport_size({"width": 1280, "height": 900})
    _log_in(page, shop_url)
    page.goto(_desk_url(shop_url, order))
    # then: the warning is shown and the IP is not ticked
    warning = page.locator("#kd-block-ip .kd-warning")
    expect(warning).to_have_text(
        "1 other buyer ordered from this IP address in the last 30 days — blocking it may block them too.")
    expect(page.locator("#id_block-block_ip")).not_to_be_checked()
    expect(page.locator("#id_block-until_ip")).to_have_value("24h")
    expect(page.locator("#id_block-until_email")).to_have_value("30d")
    screenshot("desk-en-1280px")
    # when: block the email for 7 days and the device for good (the IP stays unticked)
    page.locator("#id_block-note").fill("chargeback ring")
    page.locator("#id_block-block_email").check()
    page.locator("#id_block-until_email").select_option("7d")
    if page.locator("#id_block-block_device").count():
        page.locator("#id_block-block_device").check()
        page.locator("#id_block-until_device").select_option("never")
    started = timezone.now()
    page.get_by_role("button", name="Reject, refund and block").click()
    # then
    expect(page.locator(".messagelist")).to_contain_text(f"Order {order.order_no} rejected and refunded; blocked:")
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    entries = {e.kind: e for e in ListEntry.objects.all()}
    assert "IP" not in entries and "EMAIL" in entries
    assert abs(entries["EMAIL"].expires_at - started - timedelta(days=7)) < timedelta(minutes=1)
    assert all(e.expires_at is None for kind, e in entries.items() if kind == "DEVICE")


def test_the_desk_in_chinese(page, chromium, shop_url, flagged, run_worker, screenshot):
    # given
    _buy(page, shop_url, flagged, run_worker, "other@example.com")
    order = _buy(page, shop_url, flagged, run_worker, "zh@example.com")
    _log_in(page, shop_url)
    chromium.add_cookies([{"name": "django_language", "value": "zh-hans", "url": shop_url}])
    # when
    page.goto(_desk_url(shop_url, order))
    # then
    expect(page.locator("#content h1")).to_have_text(f"审核：订单 {order.order_no}")
    expect(page.locator("#kd-reasons")).to_contain_text("本单 1 个卡密")
    expect(page.locator("#kd-block-ip .kd-warning")).to_contain_text("最近 30 天有 1 位其他买家用该 IP 地址下过单")
    screenshot("desk-zh-390px")
