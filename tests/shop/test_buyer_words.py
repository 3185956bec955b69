"""Buyers read sentences in their language, never internal codes; the
language switch names each language in itself; /favicon.ico exists."""

import re

import pytest
from django.contrib.staticfiles import finders

from inventory.services import keys_import

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


def _visible_text(html: str) -> str:
    """The page as a reader sees it: no tags, so attribute values do not count."""
    return re.sub(r"<[^>]+>", " ", html)


def test_the_language_switch_names_english_in_english_on_a_chinese_page(client, make_product):
    # given
    make_product(keys=1)
    # when
    html = client.get("/", **ZH).content.decode()
    # then
    assert 'lang="en"' in html and ">English</button>" in html
    assert ">简体中文</button>" in html
    assert "英语" not in html


def test_favicon_ico_leads_to_an_icon_that_exists(client):
    # when
    response = client.get("/favicon.ico")
    # then
    assert response.status_code == 301
    assert response["Location"].endswith("favicon.ico")
    assert finders.find("shop/favicon.ico") and finders.find("shop/icon.svg") and finders.find("shop/icon-180.png")


def test_every_page_links_its_icons(client, make_product):
    # given
    make_product(keys=1)
    # when
    html = client.get("/").content.decode()
    # then
    assert 'rel="icon"' in html and 'rel="apple-touch-icon"' in html


@pytest.mark.parametrize("text, code", [("NO-SUCH-KEY-1", "NOT_FOUND"), ("", None)])
def test_the_key_check_page_speaks_chinese_and_shows_no_code(client, make_product, text, code):
    # given
    product = make_product()
    keys_import(product=product, source="test", entries=[(1, "ABCD-EFGH-1234")])
    # when
    response = client.post("/keys/check", {"key": text}, REMOTE_ADDR="198.51.100.31", **ZH)
    # then
    page = _visible_text(response.content.decode())
    assert "验证卡密" in page
    assert "NOT_FOUND" not in page and "VALID" not in page
    if code:
        assert "本店没有售出过这个卡密" in page
        assert f'data-code="{code}"' in response.content.decode()
    else:
        assert "请输入要查询的卡密" in page


def test_a_format_hint_names_the_character_in_the_buyers_language(client, make_product):
    # given: keys of this product are 4 letters, a dash, 4 digits
    from inventory.models import KeyPolicy

    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex="[A-Z]{4}-[0-9]{4}")
    keys_import(product=product, source="test", entries=[(1, "ABCD-1234")])
    # when
    response = client.post("/keys/check", {"key": "ABCD-12X4"}, REMOTE_ADDR="198.51.100.32", **ZH)
    # then
    page = _visible_text(response.content.decode())
    assert "请检查第 8 个字符（“X”）" in page
    assert "FORMAT_INVALID" not in page


def test_a_checkout_error_shows_a_sentence_not_a_code(client, make_product):
    # given
    product = make_product(keys=1)
    # when
    response = client.post(f"/p/{product.slug}/", {
        "email": "buyer@example.com", "quantity": 1, "coupon": "NOPE", "terms": "on", "method": "sandbox",
    }, REMOTE_ADDR="198.51.100.33")
    # then
    page = _visible_text(response.content.decode())
    assert "This coupon code is not valid for this product." in page
    assert "COUPON_INVALID" not in page
    assert 'data-code="COUPON_INVALID"' in response.content.decode()
