"""One buyer cannot hold the stock: live unpaid orders are capped per
address, device and mailbox, per product and in all (production values)."""

import pytest
from django.utils import timezone

from shop.models import Order

pytestmark = pytest.mark.django_db

API = "/api/v1/orders"


@pytest.fixture(autouse=True)
def production_caps(settings):
    settings.UNPAID_ORDERS_PER_PRODUCT = 3
    settings.UNPAID_ORDERS_MAX = 5


def _order(client, product, email, ip, **extra):
    return client.post(API, {"product": product.slug, "quantity": 1, "email": email, **extra},
                       content_type="application/json", REMOTE_ADDR=ip)


def test_a_hoarder_is_stopped_at_the_cap_while_fifty_honest_buyers_check_out(client, make_product):
    # given: 60 keys
    product = make_product(keys=60, slug="hot")
    # when: one address, 25 throwaway emails
    hoarder = [_order(client, product, f"throwaway{i}@mailinator.example", "203.0.113.66") for i in range(25)]
    # and 50 honest buyers, each from their own address
    honest = [_order(client, product, f"buyer{i}@example.com", f"198.51.100.{i + 1}") for i in range(50)]
    # then
    assert [r.status_code for r in hoarder] == [201] * 3 + [409] * 22
    error = hoarder[3].json()["error"]
    assert error["code"] == "TOO_MANY_UNPAID"
    assert error["message"].startswith("You already have 3 unpaid orders. Pay one of them")
    assert [r.status_code for r in honest] == [201] * 50
    assert Order.objects.filter(client_ip="203.0.113.66").count() == 3


@pytest.mark.parametrize("variant", ["Shopper+2@Gmail.com", "s.h.o.p.p.e.r@googlemail.com", "shopper+x@example.org"])
def test_email_variants_of_one_mailbox_count_as_one_buyer(client, make_product, variant):
    # given: three unpaid orders from the mailbox, each from another address
    product = make_product(keys=10)
    base = "shopper@gmail.com" if "example.org" not in variant else "shopper@example.org"
    for i in range(3):
        assert _order(client, product, base, f"198.51.100.{i + 1}").status_code == 201
    # when: a variant of it, from yet another address
    response = _order(client, product, variant, "198.51.100.99")
    # then
    assert (response.status_code, response.json()["error"]["code"]) == (409, "TOO_MANY_UNPAID")


def test_one_device_is_one_buyer_across_addresses_and_emails(client, make_product):
    product = make_product(keys=10)
    for i in range(3):
        assert _order(client, product, f"b{i}@example.com", f"198.51.100.{i + 1}",
                      device_id="d" * 32).status_code == 201
    response = _order(client, product, "b9@example.com", "198.51.100.50", device_id="d" * 32)
    assert response.json()["error"]["code"] == "TOO_MANY_UNPAID"


def test_the_overall_cap_counts_every_product(client, make_product):
    products = [make_product(keys=5) for _ in range(3)]
    codes = [_order(client, product, "collector@example.com", "198.51.100.7").status_code
             for product in products for _ in range(2)]
    assert codes == [201, 201, 201, 201, 201, 409]


def test_paid_or_lapsed_orders_free_the_buyers_place(client, make_product):
    # given: at the cap
    product = make_product(keys=10)
    for _ in range(3):
        _order(client, product, "again@example.com", "198.51.100.8")
    # when: one hold lapses
    first = Order.objects.order_by("id").first()
    Order.objects.filter(pk=first.pk).update(hold_expires_at=timezone.now())
    # then
    assert _order(client, product, "again@example.com", "198.51.100.8").status_code == 201


def test_a_flash_sale_product_holds_its_stock_for_a_shorter_time(client, make_product):
    product = make_product(keys=5, hold_minutes=3)
    before = timezone.now()
    assert _order(client, product, "fast@example.com", "198.51.100.9").status_code == 201
    held = (Order.objects.get().hold_expires_at - before).total_seconds()
    assert 170 < held <= 181


def test_the_product_page_explains_the_cap_in_the_buyers_words(client, make_product, settings):
    product = make_product(keys=10)
    settings.UNPAID_ORDERS_PER_PRODUCT = 1
    form = {"quantity": "1", "email": "page@example.com", "terms": "on", "buy": "1"}
    client.post(f"/p/{product.slug}/", form)
    other = client.__class__()
    response = other.post(f"/p/{product.slug}/", form)
    assert response.status_code == 400
    assert "You already have unpaid orders waiting" in response.content.decode()
    assert "TOO_MANY_UNPAID" in response.content.decode()
