"""The catalogue and product pages in Debian's Chromium, as the demo shop
shows them (categories, pictures, a sold-out product, sales): on a phone
(390 px) and a desktop (1280 px), in English and Chinese; axe-core finds no
serious violation, nothing scrolls sideways, the pictures load, and a
screenshot of each page is kept. (The live server answers /media/ itself,
with Django's test handler: shop.media's headers are tested in
tests/shop/test_catalogue_media.py.)"""

import io
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from shop.management.commands.demo import DEMO_PRODUCTS
from shop.models import Product
from tests.browser.axe import axe_violations

pytestmark = pytest.mark.django_db(transaction=True)

# Words of the pages in each language (all already in locale/zh_Hans).
WORDS = {
    "en": {"lang": "en", "sold_out": "Sold out", "buy": "Buy now"},
    "zh-hans": {"lang": "zh-Hans", "sold_out": "已售罄", "buy": "立即购买"},
}

OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# Pictures on screen that did not load (a broken picture has no natural width).
BROKEN_PICTURES = """() => [...document.images].filter(img => img.loading !== 'lazy' || img.getBoundingClientRect().top
  < innerHeight).filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)"""


@pytest.fixture
def demo_shop(settings, tmp_path, make_unpaid_order, pay, run_worker):
    """``manage.py demo`` (pictures into a MEDIA_ROOT of this test), with
    three keys of the Steam card sold."""
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("demo", stdout=io.StringIO())
    steam = Product.objects.get(slug="steam-wallet-50")
    pay(make_unpaid_order(product=steam, quantity=3))
    run_worker()
    return steam


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("width", [390, 1280])
def test_catalogue_search_and_product_pages_in_both_languages_and_widths(
    page, chromium, shop_url, demo_shop, screenshot, language, width
):
    words = WORDS[language]
    chromium.add_cookies([{"name": "django_language", "value": language, "url": shop_url}])
    page.set_viewport_size({"width": width, "height": 900})
    found = {}

    def check(name):
        expect(page.locator("html")).to_have_attribute("lang", words["lang"])
        assert page.evaluate(OVERFLOW) <= 0, f"{name} scrolls sideways"
        page.wait_for_load_state("load")
        assert page.evaluate(BROKEN_PICTURES) == [], name
        screenshot(name)
        if violations := axe_violations(page):
            found[name] = violations

    # when: the catalogue, with its chips and cards
    page.goto(f"{shop_url}/")
    chips = page.locator("nav.chips a")
    listed = len(DEMO_PRODUCTS)  # a product with variants is one card
    expect(chips.first).to_have_text(re.compile(rf"\({listed}\)$"))  # All (11)
    expect(chips).to_have_count(5)
    expect(page.locator(".pcard")).to_have_count(listed)
    expect(page.locator(".pcard.soldout")).to_have_count(1)
    expect(page.locator(".pcard.soldout .badge-soldout")).to_have_text(words["sold_out"])
    steam_card = page.locator(".pcard", has=page.locator(f"a[href='/p/{demo_shop.slug}/']"))
    expect(steam_card.locator(".sold")).to_contain_text("3")
    expect(steam_card.locator("img")).to_have_attribute("alt", demo_shop.name if language == "en" else demo_shop.name_zh)
    check("catalogue")

    # when: a category chip, then a search within it
    chips.nth(2).click()  # the second category: software
    expect(page).to_have_url(re.compile(r"\?c=software$"))
    expect(page.locator(".pcard")).to_have_count(2)
    page.locator("#search-q").fill("VPN")
    page.locator("form.search button").click()
    expect(page).to_have_url(re.compile(r"q=VPN"))
    expect(page.locator(".pcard")).to_have_count(1)
    check("search")

    # when: a search that finds nothing
    page.locator("#search-q").fill("zzz-nothing")
    page.locator("form.search button").click()
    expect(page.locator(".pcard")).to_have_count(0)
    expect(page.locator("p.empty")).to_contain_text("zzz-nothing")
    check("search-empty")
    page.locator("p.empty a").click()
    expect(page).to_have_url(f"{shop_url}/")

    # when: a product page
    page.goto(f"{shop_url}/p/{demo_shop.slug}/")
    expect(page.locator(".product-media img")).to_be_visible()
    expect(page.locator(".pay-icons img").first).to_be_visible()
    expect(page.locator(".description strong").first).to_be_visible()
    expect(page.locator(".related .pcard")).to_have_count(4)
    expect(page.get_by_role("button", name=words["buy"])).to_be_visible()
    check("product")

    # when: the sold-out product
    page.goto(f"{shop_url}/p/coffee-voucher/")
    expect(page.locator(".soldout-note")).to_be_visible()
    expect(page.locator("button[name=buy]")).to_have_count(0)
    check("product-sold-out")

    # then
    assert found == {}

