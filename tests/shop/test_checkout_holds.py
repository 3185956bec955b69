"""A checkout holds key rows, not a count: its keys are set aside for the
unpaid order (HELD), the payment hands over exactly those, a lapsed hold puts
them back, and a late payment still gets keys afresh (or waits for stock)."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus
from shop.models import Order, OrderStatus
from shop.ops.audit import audit_lines_have_their_keys
from shop.selectors import product_stock
from shop.services import checkout_place_order, order_fulfil, order_mark_paid, orders_expire_due

pytestmark = pytest.mark.django_db


def _pay(order) -> str:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=order, actor="test")
        return order_fulfil(order=order)


def _keys(order, status=CardKeyStatus.DELIVERED) -> list[int]:
    return sorted(CardKey.objects.filter(order_line__order=order, status=status).values_list("pk", flat=True))


def _held(order) -> list[int]:
    return _keys(order, CardKeyStatus.HELD)


def _lapse(order) -> None:
    Order.objects.filter(pk=order.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))


def test_a_checkout_sets_its_keys_aside_and_the_payment_hands_over_those(make_product):
    # given
    product = make_product(keys=5)
    # when
    order = checkout_place_order(product_slug=product.slug, quantity=2, email="a@example.com").order
    # then: two keys are aside for the order, three left for others
    held = _held(order)
    assert len(held) == 2 and product_stock(product=product) == 3
    assert not audit_lines_have_their_keys()
    # and: paying hands over exactly those keys
    assert _pay(order) == OrderStatus.FULFILLING
    assert _keys(order) == held
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.HELD).count() == 0
    assert not audit_lines_have_their_keys()


def test_a_newer_key_is_not_taken_from_an_older_hold(make_product):
    # given: the oldest key held by a first buyer
    product = make_product(keys=2)
    first = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com").order
    second = checkout_place_order(product_slug=product.slug, quantity=1, email="b@example.com").order
    # when: the second buyer pays first
    _pay(second)
    _pay(first)
    # then: each got the key held for them
    (first_key,), (second_key,) = _keys(first), _keys(second)
    assert first_key < second_key


def test_expiry_returns_held_keys_and_a_late_payment_waits_for_stock(make_product):
    # given: the only key held by an order whose hold lapsed
    product = make_product(keys=1)
    late = checkout_place_order(product_slug=product.slug, quantity=1, email="late@example.com").order
    _lapse(late)
    # when: the sweep expires it
    assert orders_expire_due() == 1
    # then: the key is back in stock, and the next buyer gets it
    assert CardKey.objects.get(product=product).status == CardKeyStatus.AVAILABLE
    assert product_stock(product=product) == 1
    other = checkout_place_order(product_slug=product.slug, quantity=1, email="other@example.com").order
    assert len(_held(other)) == 1
    # and: the late payment is accepted and waits for stock
    assert _pay(late) == OrderStatus.AWAITING_STOCK
    assert not audit_lines_have_their_keys()


def test_a_late_payment_before_the_sweep_still_gets_its_held_keys(make_product):
    product = make_product(keys=1)
    order = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com").order
    held = _held(order)
    _lapse(order)
    assert product_stock(product=product) == 1  # a lapsed hold counts as stock for the next buyer
    assert _pay(order) == OrderStatus.FULFILLING
    assert _keys(order) == held


def test_a_lapsed_hold_is_put_back_by_the_next_checkout_and_its_late_payment_claims_afresh(make_product):
    # given: two keys, both held by a lapsed order
    product = make_product(keys=3)
    lapsed = checkout_place_order(product_slug=product.slug, quantity=2, email="a@example.com").order
    _lapse(lapsed)
    # when: another buyer wants three
    taker = checkout_place_order(product_slug=product.slug, quantity=3, email="b@example.com").order
    # then: they got all three, the lapsed order holds none; its payment waits for stock
    assert len(_held(taker)) == 3 and _held(lapsed) == []
    assert _pay(lapsed) == OrderStatus.AWAITING_STOCK


def test_the_audit_flags_a_key_held_for_an_order_that_is_no_longer_unpaid(make_product):
    product = make_product(keys=2)
    order = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com").order
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    line = order.lines.get()
    assert audit_lines_have_their_keys() == [f"line:{line.pk}"]
