"""The owner sets the notice, the contact channels and the FAQ in the admin
(Settings section); the buyer pages show the change at once."""

import io
import re

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import reverse
from PIL import Image

from shop.adminsite import SETTINGS, model_section
from shop.models import FaqEntry, ShopProfile

pytestmark = pytest.mark.django_db

PROFILE_LIST = reverse("admin:shop_shopprofile_changelist")
PROFILE_PAGE = reverse("admin:shop_shopprofile_change", args=[1])
PROFILE_FIELDS = {
    "notice_on": "", "notice_until": "", "notice": "", "notice_zh": "", "contact_email": "", "contact_qq": "",
    "wechat_id": "", "telegram": "", "support_hours": "", "support_hours_zh": "",
}


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _png(size) -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, format="JPEG")
    return SimpleUploadedFile("我的微信.jpg", out.getvalue(), content_type="image/jpeg")


def test_the_profile_and_faq_sit_in_the_settings_section(admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    settings_models = next(s for s in admin.site.get_app_list(request) if s["section"] == "settings")["models"]
    names = {m["object_name"]: str(m["name"]) for m in settings_models}
    assert names["ShopProfile"] == "Notice and contact" and names["FaqEntry"] == "FAQ"
    assert model_section(app_label="shop", model_name="shopprofile") is SETTINGS
    assert model_section(app_label="shop", model_name="faqentry") is SETTINGS


def test_the_admin_home_leads_straight_to_the_one_profile_row(admin_client):
    # when
    home = admin_client.get(reverse("admin:index")).content.decode()
    listed = admin_client.get(PROFILE_LIST)
    page = admin_client.get(listed["Location"])
    # then
    assert f'href="{PROFILE_LIST}"' in home
    assert listed.status_code == 302 and listed["Location"] == PROFILE_PAGE
    assert page.status_code == 200
    assert ShopProfile.objects.count() == 1


def test_there_is_no_second_profile_to_add_and_none_to_delete(admin_client):
    admin_client.get(PROFILE_LIST)
    home = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:shop_shopprofile_add") not in home
    assert admin_client.get(reverse("admin:shop_shopprofile_add")).status_code == 403
    assert admin_client.post(reverse("admin:shop_shopprofile_delete", args=[1]), {"post": "yes"}).status_code == 403
    assert ShopProfile.objects.count() == 1


def test_saving_the_profile_shows_on_the_buyer_pages_at_once(admin_client, client):
    # given: a buyer page already read (and cached) the empty profile
    admin_client.get(PROFILE_LIST)
    assert 'class="shop-notice"' not in client.get("/").content.decode()
    # when
    response = admin_client.post(PROFILE_PAGE, {
        **PROFILE_FIELDS, "notice_on": "on", "notice": "Open all night.", "notice_zh": "通宵营业。",
        "telegram": "@kami_help", "contact_qq": "1000 1234", "wechat_qr": _png((1600, 1600)),
    })
    # then
    assert response.status_code == 302 and response["Location"] == PROFILE_PAGE
    profile = ShopProfile.objects.get()
    assert (profile.telegram, profile.contact_qq) == ("kami_help", "10001234")
    assert re.fullmatch(r"profile/wechat-qr-[0-9a-f]{32}\.png", profile.wechat_qr.name)
    with Image.open(profile.wechat_qr.path) as stored:
        assert (stored.format, stored.size) == ("PNG", (600, 600))
    page = client.get("/faq/").content.decode()
    assert "Open all night." in page
    assert 'href="https://t.me/kami_help"' in page
    assert f'src="/media/{profile.wechat_qr.name}"' in page


@pytest.mark.parametrize(("field", "value", "message"), [
    ("contact_qq", "12ab", "A QQ number is 5 to 12 digits."),
    ("telegram", "ab", "A Telegram username is 5 to 32 letters, digits or underscores (without the @)."),
    ("telegram", "kami-help", "A Telegram username is 5 to 32 letters, digits or underscores (without the @)."),
    ("contact_email", "support@", "Enter a valid email address."),
])
def test_a_bad_channel_is_refused_with_a_sentence_and_nothing_is_saved(admin_client, field, value, message):
    # given
    admin_client.get(PROFILE_LIST)
    # when
    response = admin_client.post(PROFILE_PAGE, {**PROFILE_FIELDS, field: value, "notice": "Not saved."})
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {field: [message]}
    assert ShopProfile.objects.get().notice == ""


def test_a_qr_that_is_not_a_picture_is_refused(admin_client):
    admin_client.get(PROFILE_LIST)
    fake = SimpleUploadedFile("qr.png", b"not a picture", content_type="image/png")
    response = admin_client.post(PROFILE_PAGE, {**PROFILE_FIELDS, "wechat_qr": fake})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["wechat_qr"]
    assert not ShopProfile.objects.get().wechat_qr


def test_editing_faq_entries_in_the_admin_changes_the_page(admin_client, client):
    # given: the data migration's entries
    first = FaqEntry.objects.order_by("position").first()
    last = FaqEntry.objects.order_by("position").last()
    # when: the last one moves to the top, the first is hidden, and one is added
    rows = list(FaqEntry.objects.order_by("position", "id"))
    form = {"form-TOTAL_FORMS": str(len(rows)), "form-INITIAL_FORMS": str(len(rows)), "_save": "Save"}
    for n, row in enumerate(rows):
        form[f"form-{n}-id"] = str(row.pk)
        form[f"form-{n}-position"] = "1" if row == last else str(row.position)
        if row != first:
            form[f"form-{n}-active"] = "on"
    listed = admin_client.post(reverse("admin:shop_faqentry_changelist"), form)
    added = admin_client.post(reverse("admin:shop_faqentry_add"), {
        "question": "Do you sell gift cards?", "answer": "Yes.", "question_zh": "", "answer_zh": "有的。",
        "position": "99", "active": "on"})
    # then
    assert listed.status_code == 302 and added.status_code == 302
    en = client.get("/faq/").content.decode()
    zh = client.get("/faq/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert first.question not in en
    assert en.index(last.question) < en.index("I closed the page.")
    assert '<dt lang="en">Do you sell gift cards?</dt>' in zh and '<dd lang="zh-Hans">有的。</dd>' in zh


def test_a_faq_entry_needs_a_question_and_an_answer_in_some_language(admin_client):
    response = admin_client.post(reverse("admin:shop_faqentry_add"), {
        "question": "", "question_zh": "", "answer": "", "answer_zh": "", "position": "1", "active": "on"})
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Write the question in English, Chinese or both.", "Write the answer in English, Chinese or both."]
    assert FaqEntry.objects.filter(position=1).count() == 0
