"""The public "check my key" page: outcomes for buyers, never a redemption, rate-limited."""

import pytest
from django.utils import timezone
from django.utils.formats import date_format

from inventory.models import KeyAuditEvent, KeyPolicy, KeyRedemption
from inventory.redemption import key_check, key_redeem
from inventory.services import keys_import

pytestmark = pytest.mark.django_db

URL = "/keys/check"


def _check(client, key, ip="198.51.100.20"):
    return client.post(URL, {"key": key}, REMOTE_ADDR=ip)


def test_the_page_shows_a_form(client):
    # when
    response = client.get(URL)
    # then
    assert response.status_code == 200
    assert 'name="key"' in response.content.decode()


def test_a_sold_key_is_genuine_and_checking_does_not_redeem_it(client, make_product, sell):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, casefold=True, strip_separators="-")
    keys_import(product=product, source="test", entries=[(1, "PRODUCT-1-KEY-00000")])
    sell(product)
    # when
    response = _check(client, "product1key00000")
    # then
    assert (response.status_code, response.context["outcome"]) == (200, "VALID")
    assert "This key is genuine and has not been redeemed yet." in response.content.decode()
    assert KeyRedemption.objects.count() == 0
    assert KeyAuditEvent.objects.filter(action="REDEEMED").count() == 0


def test_case_spaces_and_dashes_do_not_matter_for_a_product_without_a_policy(client, make_product, sell):
    # given: no KeyPolicy, so the stock compares keys exactly as typed
    product = make_product()
    keys_import(product=product, source="test", entries=[(1, "ABCD-EFGH-1234")])
    sell(product)
    # when
    response = _check(client, "abcd efgh1234")
    # then
    assert (response.status_code, response.context["outcome"]) == (200, "VALID")
    assert "This key is genuine and has not been redeemed yet." in response.content.decode()


def test_a_loose_match_never_redeems_through_the_merchant_check(make_product, sell):
    # given: the merchant API compares by the product's policy only
    product = make_product()
    keys_import(product=product, source="test", entries=[(1, "ABCD-EFGH-1234")])
    sell(product)
    # when
    strict = key_check(text="abcd efgh1234", product_ids=[product.pk])
    # then
    assert strict.code == "NOT_FOUND"


def test_a_redeemed_key_shows_the_date(client, make_product, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    redeemed = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r", actor="api")
    # when
    response = _check(client, "PRODUCT-1-KEY-00000")
    # then
    assert response.context["outcome"] == "ALREADY_REDEEMED"
    shown = date_format(timezone.localtime(redeemed.redemption.at), "DATE_FORMAT")
    assert f"was already redeemed on {shown}" in response.content.decode()


def test_a_key_in_stock_reads_as_not_found_to_the_public(client, make_product):
    # given
    make_product(keys=1)
    # when
    response = _check(client, "PRODUCT-1-KEY-00000")
    # then
    assert response.context["outcome"] == "NOT_FOUND"


def test_a_typo_gets_the_position(client, make_product):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z]{4}-[0-9]{4}$")
    # when
    response = _check(client, "ABCD-12#4")
    # then
    assert response.context["outcome"] == "FORMAT_INVALID"
    assert response.context["message"] == (
        "This does not look like one of our keys: check character 8 (“#”)."
    )


def test_the_page_is_rate_limited_per_ip(client, make_product, settings):
    # given
    settings.KEY_CHECK_RATE_PER_IP = "2/m"
    make_product(keys=1)
    # when
    statuses = [_check(client, "PRODUCT-1-KEY-00000").status_code for _ in range(3)]
    other_ip = _check(client, "PRODUCT-1-KEY-00000", ip="198.51.100.21")
    # then
    assert statuses == [200, 200, 429]
    assert other_ip.status_code == 200


def test_repeated_misses_cool_the_ip_down(client, make_product, settings):
    # given
    settings.KEY_API_COOLDOWN_STEPS = [(2, 60)]
    make_product(keys=1)
    # when
    first = [_check(client, f"NOPE-{n}").context["outcome"] for n in range(2)]
    cooled = _check(client, "PRODUCT-1-KEY-00000")
    # then
    assert first == ["NOT_FOUND", "NOT_FOUND"]
    assert (cooled.status_code, cooled.context["outcome"]) == (429, None)
    assert 59 <= int(cooled["Retry-After"]) <= 61


def test_an_empty_key_is_refused(client):
    # when
    response = _check(client, "   ")
    # then
    assert (response.status_code, response.context["error"]) == (400, "Enter the key you want to check.")
