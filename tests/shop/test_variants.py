"""Variants: one product sold as several options (30, 90 or 365 days), each a
product of its own for price, stock, holds, the claim, limits, tiers and keys,
listed and ordered through its product on the web, in the API and the admin."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from exports.models import ExportKind
from exports.selectors import export_rows
from inventory.models import CardKey, CardKeyStatus
from payments.methods import MethodConfig
from payments.services import checkout_start_payment
from riskctl.models import PurchaseLimit
from shop.models import Category, Coupon, CouponKind, ManualField, OrderStatus, Product, ProductKind, QuantityTier
from shop.ops.audit import audit_run
from shop.selectors import products_for_sale
from shop.services import CheckoutError, price_quote
from tests.shop.test_catalogue_media import PRODUCT_ADD_URL, _product_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def membership(make_product):
    """A membership with a 30-day option (2 keys, ¥10) and a 90-day one (1 key, ¥25)."""
    parent = make_product(name="Membership", name_zh="会员", slug="membership", price="10.00")
    month = make_product(keys=2, parent=parent, name="30 days", name_zh="30 天", price="10.00", max_per_order=2)
    quarter = make_product(keys=1, parent=parent, name="90 days", name_zh="90 天", price="25.00")
    return parent, month, quarter


def _checkout(product, *, variant=None, email="buyer@example.com", quantity=1):
    """Checkout and a sandbox payment opened for it, as the web form and the API do."""
    return checkout_start_payment(product_slug=product.slug, variant=variant, quantity=quantity, email=email,
                                  provider_id="sandbox").order


def test_a_variant_is_sold_at_its_own_price_from_its_own_keys(membership, pay):
    # given
    parent, month, quarter = membership
    # when: a buyer orders the 90-day option through the membership, and pays
    order = pay(_checkout(parent, variant=quarter.pk))
    # then: the order is the variant's, at its price, and holds its key
    line = order.lines.get()
    assert (line.product_id, order.amount) == (quarter.pk, Decimal("25.00"))
    assert order.status in (OrderStatus.FULFILLING, OrderStatus.DELIVERED)
    delivered = CardKey.objects.filter(order_line__order=order)
    assert [key.product_id for key in delivered] == [quarter.pk]
    # the 30-day keys were not touched, and the audit finds nothing wrong
    assert CardKey.objects.filter(product=month, status=CardKeyStatus.AVAILABLE).count() == 2
    assert [result.number for result in audit_run() if not result.ok] == []


def test_a_product_with_variants_is_ordered_only_through_one_of_them(membership, make_product):
    # given
    parent, month, quarter = membership
    other = make_product(keys=1, parent=make_product(name="Other"), name="Other option")
    quarter_off = make_product(keys=1, parent=parent, name="365 days", active=False)
    cases = {"no variant": None, "another product's variant": other.pk, "an inactive variant": quarter_off.pk}
    refused = {}
    # when
    for case, variant in cases.items():
        with pytest.raises(CheckoutError) as error:
            _checkout(parent, variant=variant)
        refused[case] = (error.value.code, error.value.field)
    # then
    assert refused == {"no variant": ("VARIANT_REQUIRED", "variant"),
                       "another product's variant": ("VARIANT_NOT_FOUND", "variant"),
                       "an inactive variant": ("VARIANT_NOT_FOUND", "variant")}
    # and: a variant named by its own slug is ordered as itself
    assert _checkout(month).lines.get().product_id == month.pk


def test_stock_holds_and_the_quantity_limit_are_each_variants_own(membership):
    # given: the only 90-day key held by a first buyer
    parent, month, quarter = membership
    _checkout(parent, variant=quarter.pk, email="first@example.com")
    # when: a second buyer wants the 90-day option, then three 30-day keys (at most 2 an order)
    with pytest.raises(CheckoutError) as sold_out:
        _checkout(parent, variant=quarter.pk, email="second@example.com")
    with pytest.raises(CheckoutError) as too_many:
        _checkout(parent, variant=month.pk, email="second@example.com", quantity=3)
    # then: refused, while the 30-day option still sells
    assert (sold_out.value.code, too_many.value.code) == ("OUT_OF_STOCK", "QUANTITY_INVALID")
    assert _checkout(parent, variant=month.pk, email="second@example.com", quantity=2).amount == Decimal("20.00")


def test_a_purchase_limit_on_one_variant_leaves_the_others_alone(membership):
    # given: one 30-day key per email a day
    parent, month, quarter = membership
    PurchaseLimit.objects.create(product=month, per=PurchaseLimit.Per.EMAIL, max_quantity=1)
    _checkout(parent, variant=month.pk)
    # when
    with pytest.raises(CheckoutError) as limited:
        _checkout(parent, variant=month.pk)
    # then
    assert limited.value.code == "LIMIT_EXCEEDED"
    assert _checkout(parent, variant=quarter.pk).lines.get().product_id == quarter.pk


def test_a_purchase_limit_on_the_product_counts_every_variant(membership):
    # given: one membership per email a day, whichever duration
    parent, month, quarter = membership
    PurchaseLimit.objects.create(product=parent, per=PurchaseLimit.Per.EMAIL, max_quantity=1)
    _checkout(parent, variant=month.pk)
    # when: the same buyer tries the other duration
    with pytest.raises(CheckoutError) as limited:
        _checkout(parent, variant=quarter.pk)
    # then: refused; another buyer is not
    assert limited.value.code == "LIMIT_EXCEEDED"
    assert _checkout(parent, variant=quarter.pk, email="other@example.com").lines.get().product_id == quarter.pk


def test_tiers_are_the_variants_own_else_its_products_and_a_products_coupon_is_good_for_its_variants(membership):
    # given: 10 % off two or more of any option, 20 % off two 30-day keys; a coupon for the
    # membership and one for the 90-day option only
    parent, month, quarter = membership
    QuantityTier.objects.create(product=parent, min_quantity=2, percent_off=Decimal(10))
    QuantityTier.objects.create(product=month, min_quantity=2, percent_off=Decimal(20))
    for_all = Coupon.objects.create(code="ALL5", kind=CouponKind.FIXED, value=Decimal(5))
    for_all.products.add(parent)
    for_quarter = Coupon.objects.create(code="Q5", kind=CouponKind.FIXED, value=Decimal(5))
    for_quarter.products.add(quarter)
    # when
    month_two = price_quote(product=month, quantity=2)
    quarter_two = price_quote(product=quarter, quantity=2)
    with_coupon = price_quote(product=month, quantity=1, coupon_code="all5")
    with pytest.raises(CheckoutError) as wrong_coupon:
        price_quote(product=month, quantity=1, coupon_code="q5")
    # then
    assert (month_two.tier_percent, month_two.amount) == (Decimal(20), Decimal("16.00"))
    assert (quarter_two.tier_percent, quarter_two.amount) == (Decimal(10), Decimal("45.00"))
    assert with_coupon.amount == Decimal("5.00")
    assert wrong_coupon.value.code == "COUPON_INVALID"


def test_the_catalogue_lists_the_product_with_its_variants_priced_from_the_cheapest(membership):
    # given
    parent, month, quarter = membership
    # when
    listed = products_for_sale()
    # then: the variants are under their product, not beside it
    assert [p.pk for p in listed] == [parent.pk]
    [shown] = listed
    assert [(v.pk, v.stock) for v in shown.variants_for_sale] == [(month.pk, 2), (quarter.pk, 1)]
    assert (shown.stock, shown.price_from) == (3, Decimal("10.00"))
    # and: a search for an option's name finds its product
    assert [p.pk for p in products_for_sale(query="90 天")] == [parent.pk]


def test_the_api_lists_variants_and_orders_one(membership, client):
    # given
    parent, month, quarter = membership
    # when
    products = client.get("/api/v1/products", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    created = client.post("/api/v1/orders", {"product": "membership", "variant": quarter.pk, "quantity": 1,
                                             "email": "api@example.com"}, content_type="application/json")
    missing = client.post("/api/v1/orders", {"product": "membership", "quantity": 1, "email": "api@example.com"},
                          content_type="application/json")
    wrong = client.post("/api/v1/orders", {"product": "membership", "variant": 10**9, "quantity": 1,
                                           "email": "api@example.com"}, content_type="application/json")
    not_a_number = client.post("/api/v1/orders", {"product": "membership", "variant": "90", "quantity": 1,
                                                  "email": "api@example.com"}, content_type="application/json")
    # then
    [listed] = products
    assert (listed["slug"], listed["kind"], listed["price"], listed["stock"]) == ("membership", "unique", "10.00", 3)
    assert [{k: v[k] for k in ("id", "name", "price", "stock")} for v in listed["variants"]] == [
        {"id": month.pk, "name": "30 天", "price": "10.00", "stock": 2},
        {"id": quarter.pk, "name": "90 天", "price": "25.00", "stock": 1},
    ]
    assert created.status_code == 201 and created.json()["amount"] == "25.00"
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "VARIANT_REQUIRED")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (404, "VARIANT_NOT_FOUND")
    assert (not_a_number.status_code, not_a_number.json()["error"]["code"]) == (400, "FIELD_INVALID")
    schema = client.get("/api/v1/openapi.json").json()
    assert "variants" in schema["components"]["schemas"]["Product"]["required"]
    assert "variant" in schema["paths"]["/api/v1/orders"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]


def test_the_product_page_offers_the_variants_and_orders_the_one_chosen(membership, client):
    # given
    parent, month, quarter = membership
    url = reverse("shop:product", args=["membership"])
    # when: the page, the 90-day option chosen, and the buyer orders it
    page = client.get(url)
    chosen = client.get(f"{url}?variant={quarter.pk}")
    ordered = client.post(f"{url}?variant={quarter.pk}", {
        "variant": quarter.pk, "quantity": 1, "email": "web@example.com", "terms": "on", "buy": "1",
        "method": "sandbox"})
    # then: the first option is shown at its price; the chosen one at its own
    assert page.context["item"].pk == month.pk and "10.00 CNY" in page.content.decode()
    assert f'href="?variant={quarter.pk}"' in page.content.decode()
    assert chosen.context["item"].pk == quarter.pk and chosen.context["stock"] == 1
    assert f'name="variant" value="{quarter.pk}"' in chosen.content.decode()
    assert ordered.status_code == 302, ordered.context and ordered.context["error"]
    [line] = Product.objects.get(pk=quarter.pk).order_lines.all()
    assert line.order.email == "web@example.com"
    # and: a variant's own address leads to its product's page with it chosen
    assert client.get(reverse("shop:product", args=[month.slug]))["Location"] == f"{url}?variant={month.pk}"


def test_the_owner_adds_variants_on_the_products_page_and_they_take_its_settings(admin_client):
    # given
    games = Category.objects.create(slug="games", name="Games")
    # when: a product with two variants is added in the admin
    response = admin_client.post(PRODUCT_ADD_URL, _product_post(**{
        "category": games.pk, "currency": "USD", "deliver_by_email": "",
        "variants-TOTAL_FORMS": "2",
        "variants-0-name": "30 days", "variants-0-name_zh": "30 天", "variants-0-price": "3.00",
        "variants-0-kind": "unique", "variants-0-max_per_order": "5", "variants-0-active": "on",
        "variants-1-name": "Shared account", "variants-1-price": "1.00", "variants-1-kind": "reusable",
        "variants-1-sales_cap": "100", "variants-1-max_per_order": "1", "variants-1-active": "on",
    }))
    # then
    assert response.status_code == 302, response.context["inline_admin_formsets"][1].formset.errors
    parent = Product.objects.get(slug="game-card")
    variants = list(parent.variants.order_by("price"))
    assert [(v.name, v.slug, v.kind, v.sales_cap) for v in variants] == [
        ("Shared account", "game-card-shared-account", ProductKind.REUSABLE, 100),
        ("30 days", "game-card-30-days", ProductKind.UNIQUE, None)]
    assert {(v.category_id, v.currency, v.deliver_by_email) for v in variants} == {(games.pk, "USD", False)}
    # and: a variant's own page has tiers but no variants of its own
    page = admin_client.get(reverse("admin:shop_product_change", args=[variants[0].pk]))
    assert [f.formset.prefix for f in page.context["inline_admin_formsets"]] == ["tiers", "manual_fields"]


def test_a_variant_cannot_have_variants(membership):
    # given: the 30-day option as the parent of a new product
    _, month, _ = membership
    nested = Product(slug="nested", name="Nested", price=Decimal(1), parent=month)
    # when / then
    with pytest.raises(ValidationError) as refused:
        nested.full_clean()
    assert "parent" in refused.value.message_dict


def test_a_payment_method_for_the_product_is_offered_for_its_variants(membership):
    # given: a method for the membership only, and one for another product only
    parent, month, _ = membership
    only_parent = MethodConfig(id="m", provider="sandbox", name="M", product_ids=frozenset({parent.pk}))
    only_other = MethodConfig(id="n", provider="sandbox", name="N", product_ids=frozenset({parent.pk + 1000}))
    # then: the first is offered for the 30-day option, the second not
    assert only_parent.offered_for(product_id=month.pk, parent_id=parent.pk, amount=Decimal(10))
    assert not only_other.offered_for(product_id=month.pk, parent_id=parent.pk, amount=Decimal(10))


def test_staff_see_a_variant_by_its_products_name_and_its_own(membership):
    # given: an order of the 90-day option
    parent, _, quarter = membership
    order = _checkout(parent, variant=quarter.pk)
    # when: the orders are exported
    rows = [row for _, row in export_rows(kind=ExportKind.ORDERS, filters={}, plaintext=False)]
    # then: the line names both, as the admin and the gateways' order subjects do
    assert [row[5:7] for row in rows] == [[quarter.slug, "Membership · 90 days"]]
    assert str(order.lines.get().product) == "Membership · 90 days"


def test_a_manual_variant_asks_its_products_questions_in_the_api_and_at_checkout(make_product, client):
    # given: a top-up with two manual variants; the questions are on the product
    parent = make_product(name="Gems top-up", slug="gems")
    ManualField.objects.create(product=parent, key="account", label="Game account", position=1)
    small = make_product(parent=parent, name="60 gems", price="6.00", kind=ProductKind.MANUAL)
    make_product(parent=parent, name="300 gems", price="30.00", kind=ProductKind.MANUAL)
    # when
    [listed] = client.get("/api/v1/products").json()
    unanswered = client.post("/api/v1/orders", {"product": "gems", "variant": small.pk, "quantity": 1,
                                                "email": "g@example.com"}, content_type="application/json")
    answered = client.post("/api/v1/orders", {"product": "gems", "variant": small.pk, "quantity": 1,
                                              "email": "g@example.com", "fields": {"account": "player-1"}},
                           content_type="application/json")
    # then: each variant lists the product's question, and checkout asks it
    assert [[f["key"] for f in v["fields"]] for v in listed["variants"]] == [["account"], ["account"]]
    assert (unanswered.status_code, unanswered.json()["error"]["code"]) == (400, "FIELD_REQUIRED")
    assert answered.status_code == 201 and answered.json()["amount"] == "6.00"
