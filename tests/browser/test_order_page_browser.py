"""The order page as a buyer uses it on a phone, in English and Chinese: the
emailed link opened in a second, fresh browser, "Copy link", a revoked link,
Pay now's countdown running out, "all my orders", and back-in-stock."""

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from shop.models import Order, SignInLink
from shop.services.order_links import order_links_revoke
from shop.services.signin import signin_link_token
from shop.templatetags.orderlinks import order_link
from tests.browser.axe import axe_violations

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = Path("/tmp/shots/c")


@pytest.fixture
def shot(screenshot):
    """A screenshot kept as a test artifact, and a copy for the reviewer."""

    def take(name: str) -> Path:
        path = screenshot(name)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)
        return path

    return take


def _fresh_browser(chromium, page):
    """Another device: no cookie of this shop, no session."""
    chromium.clear_cookies()
    return page


def _language(chromium, shop_url, language):
    chromium.add_cookies([{"name": "django_language", "value": language, "url": shop_url}])


def _no_serious_violations(page, found, name):
    violations = axe_violations(page)
    if violations:
        found[name] = violations


def _no_horizontal_overflow(page):
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"), page.url


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_emailed_link_opens_in_a_fresh_browser_and_copy_link_gives_a_working_link(
    page, chromium, shop_url, make_product, make_unpaid_order, pay, run_worker, shot, language
):
    # given: a paid order whose keys were emailed (in the buyer's language)
    product = make_product(keys=2, name="Game Card 100", name_zh="游戏点卡 100", price="100.00")
    order = make_unpaid_order(product=product, email="buyer@example.com")
    Order.objects.filter(pk=order.pk).update(language=language)
    order = pay(order)
    run_worker()
    [email] = [m for m in mail.outbox if m.to == ["buyer@example.com"]]
    emailed = re.search(r"https?://\S+/orders/\S+", email.body).group(0)
    found = {}
    # when: the buyer opens it on their phone, a browser that never saw the shop
    _fresh_browser(chromium, page)
    _language(chromium, shop_url, language)
    chromium.grant_permissions(["clipboard-read", "clipboard-write"], origin=shop_url)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(emailed)
    # then: the order, with the secret gone from the address bar
    expect(page).to_have_url(f"{shop_url}/orders/{order.order_no}/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans" if language == "zh-hans" else "en")
    expect(page.locator("#order-status")).to_have_attribute("data-status", "DELIVERED")
    expect(page.locator("#share-url")).to_have_value(re.compile(rf"/orders/{order.order_no}/\?s="))
    copy = page.locator("button.copy-link")
    expect(copy).to_be_visible()
    _no_horizontal_overflow(page)
    shot(f"order-{language}-390")
    _no_serious_violations(page, found, "order-390")
    # when: Copy link
    copy.click()
    expect(page.locator(".copied-link")).not_to_have_text("")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == page.locator("#share-url").input_value()
    # then: the copied link opens the order in yet another fresh browser
    _fresh_browser(chromium, page)
    _language(chromium, shop_url, language)
    page.goto(copied)
    expect(page).to_have_url(f"{shop_url}/orders/{order.order_no}/")
    page.set_viewport_size({"width": 1280, "height": 900})
    _no_horizontal_overflow(page)
    shot(f"order-{language}-1280")
    _no_serious_violations(page, found, "order-1280")
    # when: staff revoke the order's links; the buyer opens the old one
    order_links_revoke(order_ids=[order.pk], actor="staff:test")
    page.reload()
    expect(page.locator("h1")).not_to_have_text(re.compile(order.order_no))  # this browser lost it too
    page.goto(copied)
    # then: a polite page pointing at the lookup page
    expect(page.locator("#lookup-link")).to_have_attribute("href", "/lookup/")
    page.set_viewport_size({"width": 390, "height": 844})
    _no_horizontal_overflow(page)
    shot(f"link-dead-{language}-390")
    _no_serious_violations(page, found, "link-dead")
    assert found == {}


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_pay_now_counts_down_and_goes_when_the_hold_runs_out(page, chromium, shop_url, make_product,
                                                             make_unpaid_order, shot, language):
    # given: an unpaid order whose hold ends in a few seconds, opened by this browser
    order = make_unpaid_order(product=make_product(keys=2, name="Gift Card 50", name_zh="礼品卡 50"))
    Order.objects.filter(pk=order.pk).update(hold_expires_at=timezone.now() + timedelta(seconds=6))
    order.refresh_from_db()
    _language(chromium, shop_url, language)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(order_link(order))
    # then: a visible countdown, going down
    countdown = page.locator("#hold-countdown")
    expect(countdown).to_have_text(re.compile(r"^00:0[0-6]$"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first)
    expect(page.locator(".paynow form button").first).to_be_visible()
    shot(f"paynow-{language}-390")
    # when: it runs out
    expect(page.locator("#hold-over")).to_be_visible(timeout=10_000)
    # then: it says so, and Pay now is gone (and stays gone on reload)
    expect(page.locator(".paynow form")).to_have_count(0)
    page.reload()
    expect(page.locator("#hold-over")).to_be_visible()
    expect(page.locator(".paynow")).to_have_count(0)
    shot(f"hold-over-{language}-390")
    assert axe_violations(page) == []


@pytest.mark.parametrize("width", [390, 1280])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_all_my_orders_and_back_in_stock_pages(page, chromium, shop_url, make_product, make_unpaid_order, pay,
                                               shot, language, width):
    # given: two orders of one buyer, a sold-out product
    product = make_product(keys=2, name="Game Card 100", name_zh="游戏点卡 100")
    pay(make_unpaid_order(product=product, email="ann@example.com"))
    make_unpaid_order(product=product, email="ann@example.com", quantity=2)
    sold_out = make_product(keys=0, name="Gift Card 50", name_zh="礼品卡 50", slug="gift-50")
    _language(chromium, shop_url, language)
    page.set_viewport_size({"width": width, "height": 900})
    found = {}
    # when: the lookup page's second form
    page.goto(f"{shop_url}/lookup/")
    page.locator("#signin-email").fill("ann@example.com")
    page.locator("button[name=signin]").click()
    expect(page.locator("#signin-notice")).to_be_visible()
    _no_horizontal_overflow(page)
    shot(f"lookup-signin-{language}-{width}")
    _no_serious_violations(page, found, "lookup")
    # when: the emailed link (made here: the job runs in the worker)
    link = SignInLink.objects.get()
    page.goto(f"{shop_url}/lookup/signin/{signin_link_token(link_id=link.pk)}")
    # then
    expect(page).to_have_url(f"{shop_url}/orders/")
    expect(page.locator(".my-orders li")).to_have_count(2)
    _no_horizontal_overflow(page)
    shot(f"my-orders-{language}-{width}")
    _no_serious_violations(page, found, "my-orders")
    page.locator(".my-orders a.order-open").first.click()
    expect(page.locator("#order-status")).to_be_visible()
    page.go_back()
    page.locator(".signout button").click()
    expect(page.locator(".my-orders")).to_have_count(0)
    # when: back in stock
    page.goto(f"{shop_url}/p/{sold_out.slug}/")
    page.locator("#stock-alert-email").fill("ann@example.com")
    _no_horizontal_overflow(page)
    shot(f"stock-alert-form-{language}-{width}")
    _no_serious_violations(page, found, "stock-alert-form")
    page.locator("#stock-alert button[name=notify]").click()
    expect(page.locator("#stock-alert-done")).to_contain_text("ann@example.com")
    _no_horizontal_overflow(page)
    shot(f"stock-alert-done-{language}-{width}")
    _no_serious_violations(page, found, "stock-alert-done")
    assert found == {}
