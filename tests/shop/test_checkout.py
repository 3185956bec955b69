"""Checkout: validation, stock holds, the block list, and the web form."""

from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import Payment
from riskctl.models import Assessment, IdentifierKind, ListEntry
from riskctl.services import CheckoutBlocked
from shop.models import Order, OrderEvent, OrderStatus
from shop.services import CheckoutError, checkout_place_order

pytestmark = pytest.mark.django_db


def test_hold_stops_a_second_buyer_paying_for_the_last_key(make_product):
    # given
    product = make_product(keys=1)
    checkout_place_order(product_slug=product.slug, quantity=1, email="first@example.com")
    # when
    with pytest.raises(CheckoutError) as refused:
        checkout_place_order(product_slug=product.slug, quantity=1, email="second@example.com")
    # then
    assert refused.value.code == "OUT_OF_STOCK"
    assert Order.objects.count() == 1


def test_lapsed_hold_frees_the_stock(make_product):
    # given
    product = make_product(keys=1)
    first = checkout_place_order(product_slug=product.slug, quantity=1, email="first@example.com").order
    Order.objects.filter(pk=first.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    # when
    second = checkout_place_order(product_slug=product.slug, quantity=1, email="second@example.com").order
    # then
    assert second.status == OrderStatus.PENDING_PAYMENT
    assert second.hold_expires_at > timezone.now() + timedelta(minutes=14)


def test_order_records_price_amount_and_creation_event(make_product):
    # given
    product = make_product(keys=5, price="19.90")
    # when
    placed = checkout_place_order(product_slug=product.slug, quantity=3, email=" a@example.com ", client_ip="10.0.0.7")
    # then
    order = placed.order
    assert (str(order.amount), order.currency, order.email, order.client_ip) == ("59.70", "CNY", "a@example.com", "10.0.0.7")
    line = order.lines.get()
    assert (line.quantity, str(line.unit_price), str(line.amount)) == (3, "19.90", "59.70")
    assert list(OrderEvent.objects.filter(order=order).values_list("type", "actor")) == [("CREATED", "buyer")]
    assert len(order.order_no) == 14 and order.order_no.isdigit()


def test_blocked_email_gets_a_reference_and_nothing_is_created(make_product):
    # given
    product = make_product(keys=5)
    ListEntry.objects.create(kind=IdentifierKind.EMAIL, value="fraud@example.com", reason="chargebacks")
    # when
    with pytest.raises(CheckoutBlocked) as blocked:
        checkout_place_order(product_slug=product.slug, quantity=1, email="Fraud@Example.com")
    # then
    assert blocked.value.code == "BLOCKED"
    assert blocked.value.ref.startswith("R-") and len(blocked.value.ref) == 7
    assert Assessment.objects.get(ref=blocked.value.ref).decision == "BLOCK"
    assert Order.objects.count() == 0


def test_blocked_ip_and_expired_block(make_product):
    # given
    product = make_product(keys=5)
    ListEntry.objects.create(kind=IdentifierKind.IP, value="203.0.113.9", reason="card testing")
    ListEntry.objects.create(kind=IdentifierKind.EMAIL, value="old@example.com", reason="x",
                              expires_at=timezone.now() - timedelta(days=1))
    # when / then
    with pytest.raises(CheckoutBlocked):
        checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com", client_ip="203.0.113.9")
    placed = checkout_place_order(product_slug=product.slug, quantity=1, email="old@example.com")
    assert placed.order.status == OrderStatus.PENDING_PAYMENT


def test_inactive_product_is_not_for_sale(make_product):
    product = make_product(keys=5, active=False)
    with pytest.raises(CheckoutError) as refused:
        checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com")
    assert refused.value.code == "PRODUCT_NOT_FOUND"


def test_web_checkout_redirects_to_sandbox_pay_page(client, make_product):
    # given
    product = make_product(keys=2)
    # when
    response = client.post(f"/p/{product.slug}/", {"quantity": "1", "email": "a@example.com", "provider": "sandbox",
                                                     "terms": "on"})
    # then
    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/payments/sandbox/pay/{order.order_no}/"
    assert Payment.objects.get(order=order).amount == order.amount
    # the buyer's browser may now open the order page
    assert client.get(f"/orders/{order.order_no}/").status_code == 200


def test_web_checkout_shows_form_errors_and_creates_nothing(client, make_product):
    # given
    product = make_product(keys=2)
    # when
    bad_email = client.post(f"/p/{product.slug}/", {"quantity": "1", "email": "nope", "terms": "on"})
    too_many = client.post(f"/p/{product.slug}/", {"quantity": "3", "email": "a@example.com", "terms": "on"})
    # then
    assert bad_email.status_code == 200 and "Enter a valid email address." in bad_email.content.decode()
    assert too_many.status_code == 400 and "OUT_OF_STOCK" in too_many.content.decode()
    assert Order.objects.count() == 0


def test_order_page_opens_with_token_and_then_from_session(client, make_product):
    # given
    product = make_product(keys=2)
    placed = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com")
    url = f"/orders/{placed.order.order_no}/"
    # when
    before = client.get(url)
    wrong = client.get(f"{url}?t=wrong-token")
    with_token = client.get(f"{url}?t={placed.token}")
    after = client.get(url)
    # then
    assert before.status_code == 404
    assert wrong.status_code == 404
    assert (with_token.status_code, with_token["Location"]) == (302, url)
    assert after.status_code == 200
