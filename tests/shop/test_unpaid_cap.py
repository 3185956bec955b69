"""One buyer cannot hold the stock: live unpaid orders are capped per
mailbox and device, per product and in all, and per address of a product with
room for the many buyers behind one carrier NAT (production values)."""

from collections import Counter

import pytest
from django.utils import timezone

from shop.models import Order
from shop.services import CheckoutError, checkout_place_order
from tests.concurrency import at_once

pytestmark = pytest.mark.django_db

API = "/api/v1/orders"


@pytest.fixture(autouse=True)
def production_caps(settings):
    settings.UNPAID_ORDERS_PER_PRODUCT = 3
    settings.UNPAID_ORDERS_MAX = 5
    settings.UNPAID_ORDERS_PER_ADDRESS = 50


def _order(client, product, email, ip, **extra):
    return client.post(API, {"product": product.slug, "quantity": 1, "email": email, **extra},
                       content_type="application/json", REMOTE_ADDR=ip)


@pytest.mark.slow
def test_a_hoarder_is_stopped_at_the_address_ceiling_while_fifty_honest_buyers_check_out(client, make_product,
                                                                                         settings):
    # given: 80 keys, an address ceiling of 10
    settings.UNPAID_ORDERS_PER_ADDRESS = 10
    product = make_product(keys=80, slug="hot")
    # when: one address, 25 throwaway emails
    hoarder = [_order(client, product, f"throwaway{i}@mailinator.example", "203.0.113.66") for i in range(25)]
    # and 50 honest buyers, each from their own address
    honest = [_order(client, product, f"buyer{i}@example.com", f"198.51.100.{i + 1}") for i in range(50)]
    # then
    assert [r.status_code for r in hoarder] == [201] * 10 + [409] * 15
    error = hoarder[10].json()["error"]
    assert error["code"] == "TOO_MANY_UNPAID"
    assert error["message"].startswith("Too many unpaid orders of this product come from your network right now.")
    assert [r.status_code for r in honest] == [201] * 50
    assert Order.objects.filter(client_ip="203.0.113.66").count() == 10


@pytest.mark.slow
def test_sixty_buyers_behind_one_carrier_nat_each_get_their_order_and_each_is_still_capped(client, make_product):
    # given: the production ceiling of 50 per address and product, 200 keys
    product = make_product(keys=200)
    nat = "100.64.0.1"
    # when: 45 buyers behind one address each place an order, then one of them three more
    placed = [_order(client, product, f"phone{i}@example.com", nat) for i in range(45)]
    greedy = [_order(client, product, "phone0@example.com", nat) for _ in range(3)]
    # then: every buyer got theirs; the greedy one is stopped at their own cap of 3, in their own words
    assert [r.status_code for r in placed] == [201] * 45
    assert [r.status_code for r in greedy] == [201, 201, 409]
    assert greedy[2].json()["error"]["message"].startswith("You already have 3 unpaid orders.")
    # and: the address's ceiling comes at 50, for other products nothing changes
    more = [_order(client, product, f"late{i}@example.com", nat) for i in range(4)]
    assert [r.status_code for r in more] == [201, 201, 201, 409]
    assert _order(client, make_product(keys=1), "late9@example.com", nat).status_code == 201


def test_the_address_ceiling_can_be_turned_off(client, make_product, settings):
    settings.UNPAID_ORDERS_PER_ADDRESS = 0
    product = make_product(keys=60)
    codes = {_order(client, product, f"n{i}@example.com", "100.64.0.2").status_code for i in range(55)}
    assert codes == {201}


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


def _checkouts_at_once(product, buyers: list[dict]) -> list[str]:
    """Every buyer checks out at the same moment, each on a connection of its own."""
    outcomes: list[str] = []

    def buy(buyer: dict) -> None:
        try:
            checkout_place_order(product_slug=product.slug, quantity=1, **buyer)
            outcomes.append("ORDER")
        except CheckoutError as exc:
            outcomes.append(exc.code)
        except Exception as exc:  # a deadlock would land here  # noqa: BLE001
            outcomes.append(f"{type(exc).__name__}: {exc}")

    at_once(buy, buyers)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_one_mailbox_checking_out_from_eight_devices_at_once_still_gets_three(make_product):
    # given
    product = make_product(keys=20)
    # when: the count and the insert race unless the mailbox's lock orders them
    outcomes = _checkouts_at_once(product, [
        {"email": "hoarder@example.com", "device": f"device-{i}", "client_ip": f"198.51.100.{i + 1}"}
        for i in range(8)])
    # then
    assert Counter(outcomes) == {"ORDER": 3, "TOO_MANY_UNPAID": 5}
    assert Order.objects.filter(buyer_email="hoarder@example.com").count() == 3


@pytest.mark.django_db(transaction=True)
def test_buyers_sharing_mailboxes_and_devices_crosswise_never_deadlock_and_stay_capped(make_product):
    # given: each checkout locks its device, its mailbox and its address, and
    # the sets overlap every way (a lock order that differed between two of
    # them would deadlock, and PostgreSQL would abort one)
    product = make_product(keys=30)
    buyers = [{"email": f"mailbox{i % 3}@example.com", "device": f"device-{i % 4}",
               "client_ip": f"203.0.113.{i % 2 + 1}"} for i in range(16)]
    # when
    outcomes = _checkouts_at_once(product, buyers)
    # then
    assert set(outcomes) <= {"ORDER", "TOO_MANY_UNPAID"}, outcomes
    live = Order.objects.filter(status="PENDING_PAYMENT")
    for column in ("buyer_email", "buyer_device"):
        assert max(Counter(live.values_list(column, flat=True)).values()) <= 3
    assert live.count() == outcomes.count("ORDER") >= 3
