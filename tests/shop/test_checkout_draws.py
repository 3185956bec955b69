"""Checkout's random draws that collide (an order number, an assessment's
reference) and a pay action made offline that fails: with no savepoint
around the INSERT (shop.project.inserts), a collision is drawn again in the
same transaction, and the failure still leaves a payable order."""

from __future__ import annotations

import itertools
import json

import pytest

from inventory.models import CardKey, CardKeyStatus
from payments.models import Payment
from payments.providers.base import ProviderUnreachable
from payments.providers.sandbox import SandboxProvider
from riskctl.models import Assessment, Decision
from shop.models import Order
from shop.project.inserts import rows_insert_unless_taken
from shop.services import checkout_place_order

pytestmark = pytest.mark.django_db


def test_a_taken_order_number_is_drawn_again_in_the_same_transaction(make_product, monkeypatch):
    # given: an order numbered 26120600000001, and a draw that comes up with it first
    product = make_product(keys=2)
    first = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com").order
    draws = itertools.chain([first.order_no], ["26120600000002"])
    monkeypatch.setattr("shop.services.checkout._order_no_new", lambda: next(draws))
    # when
    placed = checkout_place_order(product_slug=product.slug, quantity=1, email="b@example.com").order
    # then: the second number, its key held, and the transaction still usable
    assert placed.order_no == "26120600000002"
    assert CardKey.objects.filter(order_line__order=placed, status=CardKeyStatus.HELD).count() == 1
    assert Order.objects.count() == 2


def test_a_taken_assessment_reference_is_drawn_again(make_product, monkeypatch):
    # given: a reference already stored, drawn first for the next checkout
    product = make_product(keys=2)
    checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com")
    taken = Assessment.objects.get().ref
    draws = itertools.chain([taken], ["R-FRESH"])
    monkeypatch.setattr("riskctl.services.assess._ref_new", lambda: next(draws))
    # when
    order = checkout_place_order(product_slug=product.slug, quantity=1, email="b@example.com").order
    # then
    assert Assessment.objects.get(order=order).ref == "R-FRESH"
    assert Assessment.objects.count() == 2


def test_rows_drawing_one_value_in_one_batch_insert_the_first_only(db):
    # given
    one, two = (Assessment(ref="R-SAME1", stage=Assessment.Stage.CHECKOUT, decision=Decision.ALLOW, score=0,
                           amount="1.00", quantity=1) for _ in range(2))
    # when
    inserted = rows_insert_unless_taken(objs=[one, two], key="ref")
    # then
    assert inserted == [one]
    assert one.pk is not None and two.pk is None
    assert list(Assessment.objects.values_list("ref", flat=True)) == ["R-SAME1"]


def test_an_offline_pay_action_that_fails_leaves_a_payable_order(client, make_product, monkeypatch):
    # given: the sandbox (start_offline) cannot make its action
    product = make_product(keys=2)

    def broken(self, *, payment):
        raise ProviderUnreachable("DOWN", "no answer")

    monkeypatch.setattr(SandboxProvider, "start", broken)
    # when
    response = client.post("/api/v1/orders", content_type="application/json",
                           data=json.dumps({"product": product.slug, "quantity": 1, "email": "a@example.com"}))
    # then: refused as before (503), but the order exists, holds its key and can be paid later
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    order = Order.objects.get(order_no=response.json()["error"]["order_no"])
    assert CardKey.objects.filter(order_line__order=order, status=CardKeyStatus.HELD).count() == 1
    assert Payment.objects.get(order=order).pay_action == {}
