"""The admin's home page in a real Chromium: the shop's name, the dashboard with
what needs action, the owner's sections, English and Chinese, and a phone's
width. Screenshots: test-artifacts/browser/test_admin_home_*.png."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from delivery.models import Channel, Delivery, DeliveryStatus
from inventory.models import CardKey
from shop.models import KeyReport, KeyReportStatus, Order, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)

SHOP_NAME = "Lotus Cards"
SECTIONS_EN = ["Overview", "Sales", "Stock", "Risk", "Delivery", "Settings", "Advanced (ops)"]
SECTIONS_ZH = ["概览", "销售", "库存", "风控", "发货", "设置", "高级（运维）"]
SCROLL_WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"


@pytest.fixture
def shop(settings, make_product, make_unpaid_order, pay):
    """Two orders in review, one waiting for stock, a dead-lettered email, an
    open key report, a product with no keys; a few days of sales."""
    settings.SHOP_NAME = SHOP_NAME
    product = make_product(keys=30, name="Game Card 100")
    make_product(name="Empty Card")
    orders = [pay(make_unpaid_order(product=product)) for _ in range(5)]
    Order.objects.filter(pk__in=[orders[0].pk, orders[1].pk]).update(status=OrderStatus.IN_REVIEW)
    Order.objects.filter(pk=orders[2].pk).update(status=OrderStatus.AWAITING_STOCK)
    Delivery.objects.filter(order=orders[3], channel=Channel.EMAIL).update(status=DeliveryStatus.FAILED)
    key = CardKey.objects.filter(order_line__order=orders[3]).first()
    KeyReport.objects.create(order=orders[3], card_key=key, reason="does not work", status=KeyReportStatus.OPEN)
    for days_ago, order in zip([1, 3, 4], orders[2:], strict=True):
        Order.objects.filter(pk=order.pk).update(paid_at=order.paid_at - timedelta(days=days_ago))
    return orders


def _sign_in(page, shop_url, settings):
    """A superuser's session cookie in the browser (the password and 2FA steps have their own tests)."""
    settings.ADMIN_REQUIRE_2FA = False
    owner = get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password="x")
    client = Client()
    client.force_login(owner)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": shop_url}])


def _assert_no_horizontal_scroll(page, where):
    scroll_width, viewport = page.evaluate(SCROLL_WIDTH)
    assert scroll_width <= viewport, f"{where}: page is {scroll_width}px wide in a {viewport}px window"


@pytest.mark.parametrize("width, language", [(1280, "en"), (1280, "zh-hans"), (390, "en")])
def test_admin_home(page, shop_url, settings, shop, screenshot, width, language):
    # given
    page.set_viewport_size({"width": width, "height": 900})
    _sign_in(page, shop_url, settings)
    page.goto(f"{shop_url}/admin/")
    if language == "zh-hans":
        # when: the owner picks Chinese in the header
        page.locator("#kd-language button[lang=zh-hans]").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    # then: the shop's name, the dashboard, the sections
    expect(page.locator("#site-name")).to_have_text(SHOP_NAME)
    assert page.title().endswith(f"| {SHOP_NAME}")
    expect(page.locator("#kd-days-chart rect")).to_have_count(14)
    sections = SECTIONS_ZH if language == "zh-hans" else SECTIONS_EN
    expect(page.locator("#kd-sections caption, #kd-sections summary")).to_have_text(sections)
    expect(page.locator("#kd-section-ops")).not_to_have_attribute("open", "")
    if language == "zh-hans":
        expect(page.locator("#kd-needing-action h2")).to_have_text("待处理")
        expect(page.locator("#kd-action-in-review .kd-label")).to_have_text("审核中的订单")
    expect(page.locator("#kd-in-review")).to_have_text("2")
    expect(page.locator("#kd-awaiting-stock")).to_have_text("1")
    expect(page.locator("#kd-dead-letter")).to_have_text("1")
    expect(page.locator("#kd-open-reports")).to_have_text("1")
    expect(page.locator("#kd-low-stock")).to_have_text("1")
    _assert_no_horizontal_scroll(page, "home")
    screenshot(f"{width}px-{language}")


def test_needing_action_tiles_open_the_filtered_lists(page, shop_url, settings, shop):
    # given
    page.set_viewport_size({"width": 1280, "height": 900})
    _sign_in(page, shop_url, settings)
    in_review = {o.order_no for o in Order.objects.filter(status=OrderStatus.IN_REVIEW)}
    expected_rows = {"in-review": 2, "awaiting-stock": 1, "dead-letter": 1, "open-reports": 1}
    for key, rows in expected_rows.items():
        page.goto(f"{shop_url}/admin/")
        # when
        page.locator(f"#kd-action-{key} a").click()
        # then: the list shows exactly the rows counted
        expect(page.locator("#result_list tbody tr")).to_have_count(rows)
        assert "e=1" not in page.url
        if key == "in-review":
            for order_no in in_review:
                expect(page.locator("#result_list tbody")).to_contain_text(order_no)
            # and the sidebar there shows the owner's sections
            expect(page.locator("#nav-sidebar caption")).to_have_text(SECTIONS_EN)
            expect(page.locator("#nav-sidebar a[aria-current=page]")).to_have_text("Orders")


def test_phone_has_no_horizontal_scroll_on_home_order_list_and_order_page(page, shop_url, settings, shop,
                                                                         screenshot):
    # given
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, shop_url, settings)
    order = shop[3]
    for name, path in [("home", "/admin/"), ("order-list", "/admin/shop/order/"),
                       ("order-page", f"/admin/shop/order/{order.pk}/change/")]:
        # when
        page.goto(f"{shop_url}{path}")
        expect(page.locator("#site-name")).to_have_text(SHOP_NAME)
        # then
        _assert_no_horizontal_scroll(page, name)
        screenshot(name)
