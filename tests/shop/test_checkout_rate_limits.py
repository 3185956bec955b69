"""Checkout rate limits: per buyer (address + device + email), with a per-address ceiling that fits a flash sale."""

import json

import pytest
from django.test import Client

from shop.models import Order

pytestmark = pytest.mark.django_db

PROXY_IP = "10.0.0.5"
NAT_IP = "203.0.113.7"


@pytest.fixture
def behind_one_nat(settings):
    """Every buyer arrives through our proxy from one carrier NAT address."""
    settings.TRUSTED_PROXIES = [PROXY_IP]
    return {"REMOTE_ADDR": PROXY_IP, "HTTP_X_FORWARDED_FOR": NAT_IP}


def _api_checkout(client, *, email, device, product="a-card"):
    body = {"product": product, "quantity": 1, "email": email, "device_id": device}
    return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")


def _web_checkout(client, *, email, device, slug="a-card"):
    return client.post(f"/p/{slug}/", {"quantity": "1", "email": email, "device_id": device, "provider": "sandbox",
                                       "terms": "on"})


def _device(n: int) -> str:
    return f"device-{n:012d}"


def test_fifty_buyers_behind_one_address_all_check_out_through_the_api(make_product, behind_one_nat):
    # given: the default limits (per buyer and the per-address ceiling), 50 distinct buyers on one address
    make_product(keys=60, slug="a-card")
    client = Client(**behind_one_nat)
    # when
    codes = [_api_checkout(client, email=f"buyer{n}@example.com", device=_device(n)).status_code for n in range(50)]
    # then: today's 30/m per address would have refused the last 20
    assert codes == [201] * 50
    assert Order.objects.count() == 50
    assert set(Order.objects.values_list("client_ip", flat=True)) == {NAT_IP}


def test_one_buyer_hammering_is_refused_while_another_on_the_same_address_gets_through(
        make_product, behind_one_nat, settings):
    # given
    settings.CHECKOUT_RATE_PER_BUYER = "5/h"
    make_product(keys=20, slug="a-card")
    client = Client(**behind_one_nat)
    # when
    codes = [_api_checkout(client, email="Ham.Mer+x@gmail.com", device=_device(1)).status_code for _ in range(5)]
    # the same buyer: the email as riskctl normalises it
    refused = _api_checkout(client, email="hammer@GMAIL.com", device=_device(1))
    other = _api_checkout(client, email="calm@example.com", device=_device(2))
    # then
    assert codes == [201] * 5
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert refused.json()["error"]["message"] == "Too many requests; slow down."
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert other.status_code == 201
    assert Order.objects.count() == 6


def test_the_per_address_ceiling_still_refuses_when_set_low(make_product, behind_one_nat, settings):
    # given
    settings.CHECKOUT_RATE_PER_IP = "3/h"
    make_product(keys=20, slug="a-card")
    client = Client(**behind_one_nat)
    elsewhere = Client(REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR="198.51.100.20")
    # when
    codes = [_api_checkout(client, email=f"buyer{n}@example.com", device=_device(n)).status_code for n in range(4)]
    refused = _api_checkout(client, email="new@example.com", device=_device(9))
    other_address = _api_checkout(elsewhere, email="new@example.com", device=_device(9))
    # then
    assert codes == [201, 201, 201, 429]
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "RATE_LIMITED")
    assert refused.json()["error"]["message"] == "Too many requests from your network; slow down."
    assert other_address.status_code == 201
    assert Order.objects.count() == 4


@pytest.mark.parametrize("rate", ["", "0"])
def test_an_empty_or_zero_rate_turns_a_limit_off(make_product, behind_one_nat, settings, rate):
    # given
    settings.CHECKOUT_RATE_PER_BUYER = rate
    settings.CHECKOUT_RATE_PER_IP = rate
    make_product(keys=30, slug="a-card")
    client = Client(**behind_one_nat)
    # when
    # (no device id: the default risk rules block a device with this many orders)
    codes = [_api_checkout(client, email="same@example.com", device="").status_code for _ in range(25)]
    # then: past the 20/m default
    assert codes == [201] * 25


def test_the_web_form_limits_per_buyer_and_per_address(make_product, behind_one_nat, settings):
    # given
    settings.CHECKOUT_RATE_PER_BUYER = "2/h"
    settings.CHECKOUT_RATE_PER_IP = "4/h"
    make_product(keys=20, slug="a-card")
    client = Client(**behind_one_nat)
    # when
    first = [_web_checkout(client, email="a@example.com", device=_device(1)).status_code for _ in range(2)]
    buyer_refused = _web_checkout(client, email="a@example.com", device=_device(1))
    other_buyer = _web_checkout(client, email="b@example.com", device=_device(2))
    address_refused = _web_checkout(client, email="c@example.com", device=_device(3))
    # then
    assert first == [302, 302]
    assert buyer_refused.status_code == 429
    assert "Too many orders in a short time." in buyer_refused.content.decode()
    assert 1 <= int(buyer_refused["Retry-After"]) <= 3600
    assert other_buyer.status_code == 302
    assert address_refused.status_code == 429
    assert "Too many orders from your network." in address_refused.content.decode()
    assert Order.objects.count() == 3


def test_web_form_and_api_share_a_buyer_budget(make_product, behind_one_nat, settings):
    # given
    settings.CHECKOUT_RATE_PER_BUYER = "2/h"
    make_product(keys=20, slug="a-card")
    client = Client(**behind_one_nat)
    # when
    web = _web_checkout(client, email="a@example.com", device=_device(1))
    api = _api_checkout(client, email="a@example.com", device=_device(1))
    refused = _api_checkout(client, email="a@example.com", device=_device(1))
    # then
    assert (web.status_code, api.status_code, refused.status_code) == (302, 201, 429)
    assert Order.objects.count() == 2
