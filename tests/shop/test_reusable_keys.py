"""Reusable keys (循环卡密): every buyer of the product gets the same key, as
a copy on their own order line; the key itself stays in stock; a sales cap
holds at checkout and at the claim; the audit tells copies from a key sold twice."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus
from inventory.services import keys_release, keys_reserve
from shop.models import Order, OrderStatus, ProductKind
from shop.ops.audit import audit_run
from shop.selectors import product_stock
from shop.services import CheckoutError, checkout_place_order, order_fulfil, order_mark_paid
from tests.shop.test_catalogue_media import _product_post

pytestmark = pytest.mark.django_db


def _audit_violations() -> dict[int, list[str]]:
    return {result.number: result.offending for result in audit_run() if not result.ok}


def _order(product, email, quantity=1) -> Order:
    return checkout_place_order(product_slug=product.slug, quantity=quantity, email=email).order


def pay(order) -> Order:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=order, actor="test")
        order_fulfil(order=order)
    order.refresh_from_db()
    return order


def _secrets(order) -> list[str]:
    return [key.secret for key in CardKey.objects.filter(order_line__order=order).order_by("id")]


def test_every_buyer_gets_the_same_key_and_it_stays_in_stock(make_product):
    # given: a shared account, one key in stock
    product = make_product(keys=1, kind=ProductKind.REUSABLE)
    [stock_key] = CardKey.objects.filter(product=product)
    # when: three buyers pay
    orders = [pay(_order(product, f"buyer{i}@example.com")) for i in range(3)]
    # then: each has the key, as a copy of its own, handed over
    assert [order.status for order in orders] == [OrderStatus.FULFILLING] * 3
    assert [_secrets(order) for order in orders] == [[stock_key.secret]] * 3
    copies = CardKey.objects.filter(source=stock_key)
    assert copies.count() == 3 and set(copies.values_list("status", flat=True)) == {CardKeyStatus.DELIVERED}
    # and: the key itself never left stock, and the shop still sells it
    stock_key.refresh_from_db()
    assert (stock_key.status, stock_key.order_line_id) == (CardKeyStatus.AVAILABLE, None)
    assert product_stock(product=product) == product.max_per_order
    assert _audit_violations() == {}


def test_a_buyer_of_several_gets_copies_of_the_keys_in_turn(make_product):
    # given: two keys of one reusable product
    product = make_product(keys=2, kind=ProductKind.REUSABLE)
    first, second = CardKey.objects.filter(product=product).order_by("id")
    # when
    order = pay(_order(product, "a@example.com", quantity=3))
    # then
    assert _secrets(order) == [first.secret, second.secret, first.secret]
    assert _audit_violations() == {}


def test_the_sales_cap_holds_at_checkout_and_frees_up_when_a_hold_lapses(make_product):
    # given: a cap of two sales; one sold, one unpaid order holding the other
    product = make_product(keys=1, kind=ProductKind.REUSABLE, sales_cap=2)
    pay(_order(product, "a@example.com"))
    unpaid = _order(product, "b@example.com")
    assert product_stock(product=product) == 0
    # when: a third buyer checks out
    with pytest.raises(CheckoutError) as refused:
        _order(product, "c@example.com")
    # then
    assert refused.value.code == "OUT_OF_STOCK"
    # and: once the unpaid hold lapses, the sale is free again
    Order.objects.filter(pk=unpaid.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    assert product_stock(product=product) == 1
    assert _order(product, "c@example.com").status == OrderStatus.PENDING_PAYMENT


def test_a_late_payment_over_the_cap_waits_instead_of_selling_more(make_product):
    # given: a cap of one; the first order's hold lapsed and a second buyer took the sale
    product = make_product(keys=1, kind=ProductKind.REUSABLE, sales_cap=1)
    late = _order(product, "late@example.com")
    Order.objects.filter(pk=late.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    pay(_order(product, "b@example.com"))
    # when: the late payment arrives
    late = pay(late)
    # then: accepted, waiting for stock, no copy made
    assert late.status == OrderStatus.AWAITING_STOCK
    assert CardKey.objects.filter(product=product, source__isnull=False).count() == 1
    assert _audit_violations() == {}


def test_a_product_without_a_key_in_stock_is_sold_out(make_product):
    # given
    product = make_product(kind=ProductKind.REUSABLE)
    # when
    with pytest.raises(CheckoutError) as refused:
        _order(product, "a@example.com")
    # then
    assert refused.value.code == "OUT_OF_STOCK" and product_stock(product=product) == 0


def test_releasing_a_reserved_copy_voids_it_and_gives_the_sale_back(make_product, make_unpaid_order):
    # given: a copy set aside for an order (one under review), the cap's only sale
    product = make_product(keys=1, kind=ProductKind.REUSABLE, sales_cap=1)
    order = make_unpaid_order(product=product)
    line = order.lines.get()
    with transaction.atomic():
        [copy_id] = keys_reserve(line=line)
    assert product_stock(product=product) == 0
    # when: the order is rejected
    with transaction.atomic():
        assert keys_release(line=line) == 1
    # then: the copy is void (the key itself never left stock), the sale is back
    copy = CardKey.objects.get(pk=copy_id)
    assert copy.status == CardKeyStatus.VOID and copy.source.status == CardKeyStatus.AVAILABLE
    assert product_stock(product=product) == 1


def test_a_unique_product_still_sells_each_key_once(make_product):
    # given
    product = make_product(keys=1)
    pay(_order(product, "a@example.com"))
    # when
    with pytest.raises(CheckoutError) as refused:
        _order(product, "b@example.com")
    # then
    assert refused.value.code == "OUT_OF_STOCK"
    assert not CardKey.objects.filter(source__isnull=False).exists()


def test_the_audit_tells_a_copy_from_a_key_sold_twice(make_product):
    # given: a reusable product sold twice, and a unique one sold once
    reusable = make_product(keys=1, kind=ProductKind.REUSABLE, sales_cap=5)
    unique = make_product(keys=1)
    pay(_order(reusable, "a@example.com"))
    pay(_order(reusable, "b@example.com"))
    unique_order = pay(_order(unique, "c@example.com"))
    assert _audit_violations() == {}
    # when: a unique product's key turns up as a copy on another line, and the cap drops under the sales
    sold = CardKey.objects.get(order_line__order=unique_order)
    forged = CardKey.objects.create(product=unique, secret_sealed=sold.secret_sealed, fingerprint=sold.fingerprint,
                                    status=CardKeyStatus.VOID, source=sold)
    type(reusable).objects.filter(pk=reusable.pk).update(sales_cap=1)
    # then: both are reported
    violations = _audit_violations()
    assert violations[7] == [f"key:{forged.pk}", f"product:{reusable.pk}"]


def test_the_api_lists_each_products_kind_and_no_number_for_an_unlimited_one(client, make_product):
    # given
    make_product(keys=3, slug="a-card")
    make_product(keys=1, slug="b-account", kind=ProductKind.REUSABLE)
    make_product(keys=1, slug="c-account", kind=ProductKind.REUSABLE, sales_cap=40)
    # when
    listed = client.get("/api/v1/products").json()
    # then
    assert [(p["slug"], p["kind"], p["stock"]) for p in listed] == [
        ("a-card", "unique", 3), ("b-account", "reusable", None), ("c-account", "reusable", 40),
    ]


def test_the_catalogue_says_in_stock_without_a_number_for_an_unlimited_product(client, make_product):
    # given
    make_product(keys=1, slug="shared", name="Shared account", kind=ProductKind.REUSABLE)
    # when
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then
    assert "In stock" in page and "Sold out" not in page


@pytest.mark.parametrize(("change", "field", "error"), [
    ({"kind": "unique", "sales_cap": "5"}, "sales_cap", "A sales cap is for reusable keys only."),
    ({"kind": "reusable", "sales_cap": ""}, "kind", "Keys of this product were sold: its kind can no longer change."),
])
def test_the_admin_refuses_a_cap_on_unique_keys_and_a_kind_change_after_a_sale(admin_client, make_product, change,
                                                                            field, error):
    # given: a unique product with one key sold
    product = make_product(keys=2, slug="game-card")
    pay(_order(product, "a@example.com"))
    # when
    response = admin_client.post(reverse("admin:shop_product_change", args=[product.pk]), _product_post(**change))
    # then
    assert response.status_code == 200
    assert error in " ".join(response.context["adminform"].form.errors.get(field, []))
    product.refresh_from_db()
    assert (product.kind, product.sales_cap) == (ProductKind.UNIQUE, None)
