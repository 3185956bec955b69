"""The shop profile on buyer pages: the notice (公告) under the header, the
contact channels in the footer and on the help page, "contact us" sentences
that lead to them, the FAQ from the database, and the cached read."""

import importlib
import io
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from riskctl.models import IdentifierKind, ListEntry
from shop.access import SESSION_ORDERS
from shop.models import FaqEntry, ShopProfile
from shop.profile import (
    NOTICE_DISMISSED_COOKIE,
    demo_profile,
    profile_notice,
    profile_qr_store,
    qr_image_fit,
    shop_profile,
    shop_profile_forget,
)

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
SEED = importlib.import_module("shop.migrations.0009_shop_profile")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _profile(**fields) -> ShopProfile:
    """The profile as the owner saved it (the admin drops the cached copy too)."""
    profile, _ = ShopProfile.objects.update_or_create(pk=1, defaults=fields)
    shop_profile_forget()
    return profile


def _png(size=(1200, 900), color="black") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _notice_region(html: str) -> str:
    match = re.search(r'<section class="shop-notice".*?</section>', html, re.S)
    return match.group(0) if match else ""


def _footer(html: str) -> str:
    return re.search(r"<footer.*?</footer>", html, re.S).group(0)


def _contact_section(html: str) -> str:
    return re.search(r'<section class="contact-section".*?</section>', html, re.S).group(0)


# --- the notice ---------------------------------------------------------------------------


def test_the_notice_shows_under_the_header_in_the_buyers_language(client):
    # given
    _profile(notice_on=True, notice="Maintenance tonight.\nOrders still deliver.", notice_zh="今晚系统维护。")
    # when
    en = client.get("/").content.decode()
    zh = client.get("/lookup/", **ZH).content.decode()
    # then
    notice_en, notice_zh = _notice_region(en), _notice_region(zh)
    assert 'aria-label="Shop notice"' in notice_en
    assert '<p class="shop-notice-text" lang="en">Maintenance tonight.<br>Orders still deliver.</p>' in notice_en
    assert '<p class="shop-notice-text" lang="zh-Hans">今晚系统维护。</p>' in notice_zh
    assert en.index("</header>") < en.index('class="shop-notice"') < en.index('<main')
    # Without JavaScript there is nothing to press: the close button is revealed by site.js.
    assert 'class="shop-notice-close" hidden' in notice_en


def test_a_notice_written_in_one_language_shows_in_the_other_marked_as_such(client):
    # given
    _profile(notice_on=True, notice="", notice_zh="春节期间正常发货。")
    # when
    en = _notice_region(client.get("/").content.decode())
    _profile(notice_on=True, notice="Open during the holidays.", notice_zh="")
    zh = _notice_region(client.get("/", **ZH).content.decode())
    # then
    assert '<p class="shop-notice-text" lang="zh-Hans">春节期间正常发货。</p>' in en
    assert '<p class="shop-notice-text" lang="en">Open during the holidays.</p>' in zh


def test_the_notice_is_escaped_plain_text(client):
    _profile(notice_on=True, notice='<script>alert(1)</script> See https://example.com/news')
    page = _notice_region(client.get("/").content.decode())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<a href="https://example.com/news" rel="nofollow">https://example.com/news</a>' in page


@pytest.mark.parametrize("fields", [
    {"notice_on": False, "notice": "Switched off."},
    {"notice_on": True, "notice": "Past its day.", "notice_until": "yesterday"},
    {"notice_on": True, "notice": "   ", "notice_zh": ""},
], ids=["off", "past its last day", "empty"])
def test_the_notice_is_not_shown_when_off_past_its_day_or_empty(client, fields):
    # given
    if fields.get("notice_until") == "yesterday":
        fields = {**fields, "notice_until": timezone.localdate() - timedelta(days=1)}
    _profile(**fields)
    # when
    page = client.get("/").content.decode()
    # then
    assert 'class="shop-notice"' not in page


def test_the_notice_shows_through_its_last_day(client):
    _profile(notice_on=True, notice="Sale ends today.", notice_until=timezone.localdate())
    assert "Sale ends today." in _notice_region(client.get("/").content.decode())


def test_a_closed_notice_stays_closed_until_the_owner_edits_it(client):
    # given
    profile = _profile(notice_on=True, notice="First notice.")
    version = profile_notice(profile).version
    # when
    client.cookies[NOTICE_DISMISSED_COOKIE] = version
    closed = client.get("/").content.decode()
    _profile(notice_on=True, notice="Second notice.")
    edited = client.get("/").content.decode()
    # then
    assert 'class="shop-notice"' not in closed
    assert "Second notice." in _notice_region(edited)
    assert f'data-version="{version}"' not in edited


def test_the_notice_is_on_every_buyer_page(client, make_product):
    # given
    product = make_product(keys=1)
    _profile(notice_on=True, notice="Everywhere.")
    # when / then
    for path in ("/", f"/p/{product.slug}/", "/lookup/", "/faq/", "/keys/check", "/no-such-page/"):
        response = client.get(path)
        assert "Everywhere." in _notice_region(response.content.decode()), path


# --- contact channels -----------------------------------------------------------------------


def test_the_footer_shows_only_the_channels_that_are_set(client):
    # given
    _profile(contact_qq="123456789", telegram="kami_help")
    # when
    footer = _footer(client.get("/").content.decode())
    # then
    assert 'class="contact contact-qq"' in footer
    assert '<span class="contact-value">123456789</span>' in footer
    assert 'data-copy="123456789"' in footer
    assert '<a class="contact-value" href="https://t.me/kami_help" rel="noopener noreferrer">@kami_help</a>' in footer
    assert "contact-email" not in footer and "contact-wechat" not in footer
    assert "mailto:" not in footer


def test_without_any_channel_the_footer_lists_none_but_still_links_the_help_page(client):
    _profile(notice_on=False)
    footer = _footer(client.get("/").content.decode())
    assert 'class="contacts' not in footer
    assert '<a href="/faq/#contact">Contact</a>' in footer


def test_the_contact_section_lists_every_channel_with_the_wechat_qr_and_hours(client):
    # given
    profile = _profile(contact_email="help@shop.example", contact_qq="10001", wechat_id="kami_shop",
                       telegram="kami_help", support_hours="9:00-22:00", support_hours_zh="每天 9:00-22:00")
    profile_qr_store(profile=profile, picture=qr_image_fit(data=_png()))
    profile.save()
    shop_profile_forget()
    # when
    en = _contact_section(client.get("/faq/").content.decode())
    zh = _contact_section(client.get("/faq/", **ZH).content.decode())
    # then
    assert 'id="contact"' in en
    for kind in ("qq", "wechat", "telegram", "email"):
        assert f'class="contact contact-{kind}"' in en
    assert 'href="mailto:help@shop.example"' in en
    assert '<span class="contact-value">kami_shop</span>' in en
    assert f'<img src="/media/{profile.wechat_qr.name}"' in en
    assert '<span lang="en">9:00-22:00</span>' in en
    assert '<span lang="zh-Hans">每天 9:00-22:00</span>' in zh
    assert "联系我们" in zh  # the section's heading, in Chinese


def test_a_wechat_qr_without_an_id_is_a_channel_too(client):
    # given
    profile = _profile()
    profile_qr_store(profile=profile, picture=qr_image_fit(data=_png()))
    profile.save()
    shop_profile_forget()
    # when
    footer = _footer(client.get("/").content.decode())
    section = _contact_section(client.get("/faq/").content.decode())
    # then
    assert '<a class="contact-value" href="/faq/#contact">Scan our QR code</a>' in footer
    assert f'<img src="/media/{profile.wechat_qr.name}"' in section


def test_the_contact_section_without_channels_sends_the_buyer_to_find_my_order(client):
    page = _contact_section(client.get("/faq/").content.decode())
    assert 'class="contacts' not in page
    assert '<a href="/lookup/">Find my order</a>' in page
    assert "Write to us" not in page


def test_the_header_links_the_contact_section(client):
    page = client.get("/").content.decode()
    nav = re.search(r'<nav class="nav".*?</nav>', page, re.S).group(0)
    assert '<a href="/faq/#contact">Contact</a>' in nav


# --- "contact us" sentences ---------------------------------------------------------------


def _blocked_checkout(client, product):
    ListEntry.objects.create(kind=IdentifierKind.EMAIL, value="fraud@example.com", reason="chargebacks")
    return client.post(f"/p/{product.slug}/", {"quantity": "1", "email": "fraud@example.com", "terms": "on",
                                               "buy": "1"})


def test_a_blocked_checkout_says_contact_us_with_a_link_to_the_channels(client, make_product):
    # given
    product = make_product(keys=2)
    _profile(contact_qq="10001")
    # when
    page = _blocked_checkout(client, product).content.decode()
    # then
    assert re.search(r'We cannot take this order\. Contact us with reference R-\w{5}\. '
                     r'<a href="/faq/#contact">Our contact details</a>', page)


def test_a_blocked_checkout_without_channels_does_not_promise_a_contact(client, make_product):
    product = make_product(keys=2)
    page = _blocked_checkout(client, product).content.decode()
    assert re.search(r"We cannot take this order \(reference R-\w{5}\)\.", page)
    assert "Contact us" not in page


def _report_until_limited(client, make_product, make_unpaid_order):
    order = make_unpaid_order(product=make_product(keys=1))
    session = client.session
    session[SESSION_ORDERS] = [order.order_no]
    session.save()
    for _ in range(10):
        client.post(f"/orders/{order.order_no}/keys/999999/report", {"reason": "broken"})
    return client.post(f"/orders/{order.order_no}/keys/999999/report", {"reason": "broken"}, follow=True)


def test_too_many_reports_links_the_channels(client, make_product, make_unpaid_order):
    _profile(telegram="kami_help")
    page = _report_until_limited(client, make_product, make_unpaid_order).content.decode()
    assert ('Too many reports from your network. Please contact us instead. '
            '<a href="/faq/#contact">Our contact details</a>') in page


def test_too_many_reports_without_channels_says_when_to_try_again(client, make_product, make_unpaid_order):
    page = _report_until_limited(client, make_product, make_unpaid_order).content.decode()
    assert "Too many reports from your network. Please wait an hour and try again." in page
    assert "contact us" not in page


def test_no_way_to_pay_links_the_channels_or_says_to_come_back(client, make_product, settings):
    # given
    settings.SANDBOX_ENABLED = False
    product = make_product(keys=2)
    # when
    without = client.get(f"/p/{product.slug}/").content.decode()
    _profile(contact_email="help@shop.example")
    with_channels = client.get(f"/p/{product.slug}/").content.decode()
    # then
    assert "No way to pay is available for this product right now. Please try again later." in without
    assert "Please contact us" not in without
    assert ('No way to pay is available for this product right now. Please contact us. '
            '<a href="/faq/#contact">Our contact details</a>') in with_channels


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("contact_qq", "1234"), ("contact_qq", "1234567890123"), ("contact_qq", "12a456"),
    ("telegram", "abcd"), ("telegram", "has-dash"), ("telegram", "x" * 33),
    ("wechat_id", "1abcdef"), ("contact_email", "not-an-email"),
])
def test_a_bad_channel_is_refused(field, value):
    with pytest.raises(ValidationError) as refused:
        ShopProfile(**{field: value}).full_clean()
    assert list(refused.value.message_dict) == [field]


def test_good_channels_pass():
    ShopProfile(contact_qq="10001", telegram="kami_help", wechat_id="kami-shop_1", contact_email="a@b.example"
                ).full_clean()


def test_the_database_holds_one_profile_only():
    ShopProfile.objects.create(pk=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ShopProfile.objects.create(pk=2)


def test_the_qr_picture_is_scaled_to_600_px_png_named_by_content():
    fitted = qr_image_fit(data=_png((1500, 1200)))
    image = Image.open(io.BytesIO(fitted.read()))
    assert (image.format, image.size) == ("PNG", (600, 480))
    assert re.fullmatch(r"wechat-qr-[0-9a-f]{32}\.png", fitted.name)


# --- FAQ ------------------------------------------------------------------------------------


def test_the_faq_shows_the_built_in_entries_in_both_languages(client):
    # given: the entries the data migration wrote (again here: transactional tests empty the table)
    SEED.faq_defaults_create(apps, None)
    # when
    en = client.get("/faq/").content.decode()
    zh = client.get("/faq/", **ZH).content.decode()
    # then
    assert FaqEntry.objects.count() == 4
    assert '<dt lang="en">When do I get my key?</dt>' in en
    assert '<dt lang="zh-Hans">什么时候能收到卡密？</dt>' in zh
    assert en.index("When do I get my key?") < en.index("My order says it is being checked.")


def test_the_faq_seed_keeps_a_shops_own_entries_and_its_reverse_removes_only_the_seed():
    FaqEntry.objects.all().delete()  # the migration's entries
    FaqEntry.objects.create(question="Own?", answer="Yes.")
    SEED.faq_defaults_create(apps, None)
    assert list(FaqEntry.objects.values_list("question", flat=True)) == ["Own?"]
    FaqEntry.objects.all().delete()
    SEED.faq_defaults_create(apps, None)
    FaqEntry.objects.create(question="Own?", answer="Yes.")
    SEED.faq_defaults_remove(apps, None)
    assert list(FaqEntry.objects.values_list("question", flat=True)) == ["Own?"]


def test_faq_entries_fall_back_to_the_other_language_and_hide_when_not_shown(client):
    # given
    FaqEntry.objects.create(question="Only English?", answer="Yes.\nTwo lines.", position=1)
    FaqEntry.objects.create(question_zh="只有中文？", answer_zh="是的。", position=2)
    FaqEntry.objects.create(question="Hidden", answer="No.", position=3, active=False)
    # when
    en = client.get("/faq/").content.decode()
    zh = client.get("/faq/", **ZH).content.decode()
    # then
    assert '<dt lang="en">Only English?</dt>\n  <dd lang="en">Yes.<br>Two lines.</dd>' in en
    assert '<dt lang="zh-Hans">只有中文？</dt>\n  <dd lang="zh-Hans">是的。</dd>' in en
    assert '<dt lang="en">Only English?</dt>' in zh
    assert "Hidden" not in en


# --- the cached read ------------------------------------------------------------------------


def test_a_second_page_view_reads_the_profile_from_the_cache(client, django_assert_num_queries):
    # given
    _profile(notice_on=True, notice="Cached.", contact_qq="10001")
    client.get("/no-such-page/")  # the first view reads the row and caches it
    # when / then: the 404 page runs no query of its own; the frame reads none either
    with django_assert_num_queries(0):
        page = client.get("/no-such-page/").content.decode()
    assert "Cached." in page and "10001" in page


def test_the_first_view_reads_the_row_once(client, django_assert_num_queries):
    _profile(notice_on=True, notice="Read once.")
    cache.clear()
    with django_assert_num_queries(1):
        page = client.get("/no-such-page/").content.decode()
    assert "Read once." in page


def test_saving_drops_the_cached_profile():
    _profile(notice_on=True, notice="Old.")
    assert shop_profile().notice == "Old."
    _profile(notice_on=True, notice="New.")
    assert shop_profile().notice == "New."


def test_no_profile_row_is_cached_too(django_assert_num_queries):
    assert shop_profile() is None
    with django_assert_num_queries(0):
        assert shop_profile() is None


# --- demo -----------------------------------------------------------------------------------


def test_demo_profile_is_idempotent_and_sets_every_channel(client, media_root):
    # when
    first = demo_profile()
    second = demo_profile()
    # then
    assert ShopProfile.objects.count() == 1
    assert first.wechat_qr.name == second.wechat_qr.name
    assert len(list((media_root / "profile").iterdir())) == 1
    assert FaqEntry.objects.count() == 4
    page = client.get("/faq/", **ZH).content.decode()
    assert "欢迎光临" in _notice_region(page)
    for kind in ("qq", "wechat", "telegram", "email"):
        assert f'class="contact contact-{kind}"' in page
    qr = client.get(f"/media/{second.wechat_qr.name}")
    assert qr.status_code == 200 and qr["Content-Type"] == "image/png"
