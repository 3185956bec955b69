"""The shop notice and the contact channels as a buyer sees them, in Chromium,
on a phone (390 px) and a desktop (1280 px), in English and Chinese: no
serious axe violation, nothing wider than the screen, the notice's close
button remembered across pages, the QR code shown, a number copied."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from shop.profile import NOTICE_DISMISSED_COOKIE, demo_profile, shop_profile_forget
from tests.browser.axe import axe_violations

pytestmark = pytest.mark.django_db(transaction=True)

# The picture's natural width once it has loaded (0: it failed to). The QR is
# loading="lazy": visible on screen, it may still be on its way.
LOADED_WIDTH = """img => img.complete ? img.naturalWidth : new Promise(done => {
  img.addEventListener('load', () => done(img.naturalWidth), {once: true});
  img.addEventListener('error', () => done(0), {once: true});
  setTimeout(() => done(-1), 15000);
})"""

TEXT = {
    "en": {"notice": "Welcome! Keys are delivered automatically", "close": "Close the notice", "copied": "Copied",
           "contact": "Contact"},
    # The notice is the owner's text; "已复制" and "联系我们" are in the compiled catalogue.
    "zh-hans": {"notice": "欢迎光临！付款后卡密秒发", "close": None, "copied": "已复制", "contact": "联系我们"},
}


@pytest.fixture
def demo_shop(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return demo_profile()


def _no_horizontal_overflow(page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), \
        page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("width", [390, 1280])
def test_notice_and_contact_channels_in_both_languages_and_widths(
    page, chromium, shop_url, demo_shop, screenshot, language, width
):
    # given
    chromium.add_cookies([{"name": "django_language", "value": language, "url": shop_url}])
    chromium.grant_permissions(["clipboard-read", "clipboard-write"], origin=shop_url)
    page.set_viewport_size({"width": width, "height": 900})
    words = TEXT[language]
    found = {}

    def audit(name):
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hans" if language == "zh-hans" else "en")
        _no_horizontal_overflow(page)
        screenshot(f"{language}-{width}-{name}")
        if violations := axe_violations(page):
            found[name] = violations

    # when: the catalogue, with the notice under the header and the channels in the footer
    page.goto(f"{shop_url}/")
    notice = page.locator("#shop-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(words["notice"])
    footer = page.locator("footer")
    for kind in ("qq", "wechat", "telegram", "email"):
        expect(footer.locator(f".contact-{kind}")).to_be_visible()
    expect(footer.locator(".contact-telegram a")).to_have_attribute("href", "https://t.me/kamidrop_support")
    audit("catalogue")
    # the help page's contact section, with the WeChat QR code
    page.goto(f"{shop_url}/faq/#contact")
    section = page.locator(".contact-section")
    expect(section.locator("h2")).to_have_text(words["contact"])
    qr = section.locator(".wechat-qr img")
    expect(qr).to_be_visible()
    assert qr.evaluate(LOADED_WIDTH) > 0  # served by /media/
    audit("faq-contact")
    # a number is copied
    copy = section.locator(".contact-qq .copy-contact")
    copy.click()
    expect(copy).to_have_text(words["copied"])
    # the notice is closed, and stays closed on the next page
    close = notice.locator(".shop-notice-close")
    if words["close"]:
        expect(close).to_have_accessible_name(words["close"])
    close.click()
    expect(page.locator("#shop-notice")).to_have_count(0)
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(f"{shop_url}/lookup/")
    expect(page.locator("#shop-notice")).to_have_count(0)
    cookies = {c["name"]: c["value"] for c in chromium.cookies(shop_url)}
    assert len(cookies[NOTICE_DISMISSED_COOKIE]) == 12
    audit("lookup-notice-closed")
    # then
    assert found == {}


def test_an_edited_notice_shows_again_after_the_old_one_was_closed(page, shop_url, demo_shop):
    # given
    page.goto(f"{shop_url}/")
    page.locator(".shop-notice-close").click()
    expect(page.locator("#shop-notice")).to_have_count(0)
    # when
    demo_shop.notice = "Stock of every game card refilled."
    demo_shop.save()
    shop_profile_forget()
    page.goto(f"{shop_url}/")
    # then
    expect(page.locator("#shop-notice")).to_contain_text("Stock of every game card refilled.")


@pytest.mark.parametrize("width", [390, 1280])
def test_the_owner_writes_the_notice_in_the_admin_and_buyers_see_it(page, shop_url, settings, tmp_path, screenshot,
                                                                     width):
    # given: the owner signed in (the password and 2FA steps have their own tests)
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ADMIN_REQUIRE_2FA = False
    owner = get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password="x")
    client = Client()
    client.force_login(owner)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": shop_url}])
    page.set_viewport_size({"width": width, "height": 900})
    # when: from the admin home, Settings → Notice and contact
    page.goto(f"{shop_url}/admin/")
    page.get_by_role("link", name="Notice and contact").first.click()
    expect(page).to_have_url(f"{shop_url}/admin/shop/shopprofile/1/change/")
    page.get_by_label("Show the notice").check()
    page.get_by_label("Notice (English)").fill("Back on Monday.")
    page.get_by_label("Notice (Chinese)").fill("周一恢复发货。")
    page.get_by_label("QQ number").fill("12345678")
    page.get_by_label("Telegram username").fill("@kami_help")
    screenshot(f"admin-{width}")
    page.get_by_role("button", name="Save", exact=True).click()
    # then
    expect(page.locator(".messagelist")).to_be_visible()
    _no_horizontal_overflow(page)
    page.goto(f"{shop_url}/")
    expect(page.locator("#shop-notice")).to_contain_text("Back on Monday.")
    expect(page.locator("footer .contact-telegram a")).to_have_attribute("href", "https://t.me/kami_help")
