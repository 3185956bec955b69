"""Coupons and quantity tiers: the price is computed on the server, stored on the order."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments.models import Payment
from shop.models import Coupon, CouponKind, Order, QuantityTier
from shop.services import CheckoutError, checkout_place_order, price_quote
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


def test_tier_then_percent_coupon_rounded_to_cents(make_product):
    # given
    product = make_product(keys=20, price="9.99")
    QuantityTier.objects.create(product=product, min_quantity=10, percent_off=Decimal("5"))
    QuantityTier.objects.create(product=product, min_quantity=5, percent_off=Decimal("2"))
    Coupon.objects.create(code="SAVE10", kind=CouponKind.PERCENT, value=Decimal("10"))
    # when
    quote = price_quote(product=product, quantity=10, coupon_code=" save10 ")
    # then: 99.90 − 5 % (4.995 → 5.00) = 94.90; − 10 % (9.49) = 85.41
    assert (quote.subtotal, quote.tier_percent, quote.tier_discount) == (Decimal("99.90"), Decimal("5"), Decimal("5.00"))
    assert (quote.coupon_code, quote.coupon_discount, quote.amount) == ("SAVE10", Decimal("9.49"), Decimal("85.41"))
    assert quote.discount == Decimal("14.49")


def test_below_the_first_tier_pays_list_price(make_product):
    # given
    product = make_product(keys=20, price="10.00")
    QuantityTier.objects.create(product=product, min_quantity=10, percent_off=Decimal("5"))
    # when
    quote = price_quote(product=product, quantity=9)
    # then
    assert (quote.amount, quote.discount, quote.tier_percent) == (Decimal("90.00"), Decimal("0.00"), Decimal("0"))


def test_fixed_coupon_never_makes_an_order_free(make_product):
    # given
    product = make_product(keys=2, price="5.00")
    Coupon.objects.create(code="BIG", kind=CouponKind.FIXED, value=Decimal("50.00"))
    # when
    quote = price_quote(product=product, quantity=1, coupon_code="BIG")
    # then
    assert (quote.coupon_discount, quote.amount) == (Decimal("4.99"), Decimal("0.01"))


def test_checkout_stores_prices_and_counts_the_coupon_and_payment_uses_the_amount(client, make_product):
    # given
    make_product(keys=5, price="100.00", slug="card")
    coupon = Coupon.objects.create(code="TEN", kind=CouponKind.FIXED, value=Decimal("10.00"), usage_limit=5)
    # when
    response = client.post("/api/v1/orders", {"product": "card", "quantity": 2, "email": "a@example.com",
                                              "coupon": "ten"}, content_type="application/json")
    # then
    order = Order.objects.get()
    line = order.lines.get()
    assert response.status_code == 201 and response.json()["amount"] == "190.00"
    assert (order.amount, order.discount, order.coupon_code, order.coupon_id) == (
        Decimal("190.00"), Decimal("10.00"), "TEN", coupon.pk)
    assert (line.unit_price, line.discount, line.amount) == (Decimal("100.00"), Decimal("10.00"), Decimal("190.00"))
    assert Payment.objects.get(order=order).amount == Decimal("190.00")
    coupon.refresh_from_db()
    assert coupon.used_count == 1
    # and the callback accepts the discounted amount (not the list price)
    assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
    order.refresh_from_db()
    assert order.status in ("FULFILLING", "DELIVERED")


@pytest.mark.parametrize("fields, code", [
    ({"expires_at": timezone.now() - timedelta(seconds=1)}, "COUPON_EXPIRED"),
    ({"usage_limit": 1, "used_count": 1}, "COUPON_USED_UP"),
    ({"active": False}, "COUPON_INVALID"),
])
def test_unusable_coupon_is_refused_with_its_code_and_nothing_is_created(client, make_product, fields, code):
    # given
    make_product(keys=5, slug="card")
    Coupon.objects.create(code="X1", kind=CouponKind.PERCENT, value=Decimal("10"), **fields)
    # when
    response = client.post("/api/v1/orders", {"product": "card", "quantity": 1, "email": "a@example.com",
                                              "coupon": "X1"}, content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert (Order.objects.count(), Payment.objects.count()) == (0, 0)
    assert Coupon.objects.get().used_count == fields.get("used_count", 0)


def test_coupon_bound_to_another_product_is_invalid(make_product):
    # given
    product, other = make_product(keys=1), make_product(keys=1)
    coupon = Coupon.objects.create(code="ONLY", kind=CouponKind.PERCENT, value=Decimal("10"))
    coupon.products.add(other)
    # when
    with pytest.raises(CheckoutError) as refused:
        checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com", coupon="ONLY")
    # then
    assert refused.value.code == "COUPON_INVALID"
    assert Order.objects.count() == 0


def test_last_coupon_use_goes_to_one_order_only(make_product):
    # given
    product = make_product(keys=5)
    Coupon.objects.create(code="ONCE", kind=CouponKind.PERCENT, value=Decimal("50"), usage_limit=1)
    first = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com", coupon="ONCE")
    # when
    with pytest.raises(CheckoutError) as refused:
        checkout_place_order(product_slug=product.slug, quantity=1, email="b@example.com", coupon="ONCE")
    # then
    assert refused.value.code == "COUPON_USED_UP"
    assert list(Order.objects.values_list("pk", "amount")) == [(first.order.pk, Decimal("5.00"))]
    assert Coupon.objects.get().used_count == 1


def test_web_check_price_shows_the_server_price_without_an_order(client, make_product):
    # given
    product = make_product(keys=20, price="10.00")
    QuantityTier.objects.create(product=product, min_quantity=10, percent_off=Decimal("5"))
    # when
    page = client.post(f"/p/{product.slug}/", {"quantity": "10", "email": "", "preview": "1"}).content.decode()
    # then
    assert '<td id="quote-total">95.00 CNY</td>' in page
    assert "10 or more" in page and "5% off" in page
    assert Order.objects.count() == 0


def test_web_check_price_keeps_what_the_buyer_typed_including_the_query_password(client, make_product):
    # given
    product = make_product(keys=20, price="10.00")
    # when
    response = client.post(f"/p/{product.slug}/", {
        "quantity": "2", "email": "b@example.com", "query_password": "hunter2-pw", "terms": "on", "preview": "1",
    })
    # then: every field is filled in again but the terms, which are accepted at the real submit
    form = response.context["form"]
    assert 'value="hunter2-pw"' in str(form["query_password"])
    assert 'value="b@example.com"' in str(form["email"])
    assert "checked" not in str(form["terms"])
    assert response.headers["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert Order.objects.count() == 0


def test_the_query_password_is_not_rendered_back_after_a_refused_order(client, make_product):
    # given: the real submit, refused (terms not accepted)
    product = make_product(keys=20, price="10.00")
    # when
    response = client.post(f"/p/{product.slug}/", {
        "quantity": "2", "email": "b@example.com", "query_password": "hunter2-pw",
    })
    # then
    assert response.context["form"].errors == {"terms": ["Please accept the terms to continue."]}
    assert "hunter2-pw" not in response.content.decode()
