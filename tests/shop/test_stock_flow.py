"""Stock meets orders: holds at checkout, waiting orders filled on restock,
low-stock alerts once per crossing, replacing a key that does not work."""

from collections import Counter

import pytest
from django.db import transaction

from delivery.models import Channel, Delivery, OwnerAlert
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent, KeyPolicy
from inventory.services import key_entries, keys_unvoid, keys_void
from shop.models import Order, OrderEventType, OrderStatus
from shop.selectors import order_keys
from shop.services import (
    CheckoutError,
    checkout_place_order,
    order_fill_from_stock,
    order_fulfil,
    order_key_replace,
    order_mark_paid,
    product_stock_import,
)
from tests.concurrency import at_once

pytestmark = pytest.mark.django_db


def _pay(order) -> str:
    """Run the paid step of the flow for ``order`` (as the callback does)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=order, actor="test")
        return order_fulfil(order=order)


def _restock(product, *keys):
    return product_stock_import(product=product, entries=key_entries(keys), source="test")


def test_waiting_orders_are_filled_oldest_first_on_import(make_product, make_unpaid_order,
                                                          django_capture_on_commit_callbacks):
    # given: two paid orders waiting for stock
    product = make_product()
    older = make_unpaid_order(product=product, quantity=2)
    younger = make_unpaid_order(product=product, quantity=1)
    assert _pay(older) == _pay(younger) == OrderStatus.AWAITING_STOCK
    # when: only two keys arrive
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        report = _restock(product, "NEW-1", "NEW-2")
    # then: the older order gets them; the younger keeps waiting
    older.refresh_from_db(), younger.refresh_from_db()
    assert report.added == 2
    assert (older.status, younger.status) == (OrderStatus.FULFILLING, OrderStatus.AWAITING_STOCK)
    assert sorted(k.secret for k in order_keys(order=older)) == ["NEW-1", "NEW-2"]
    assert list(older.events.order_by("at", "id").values_list("type", flat=True))[-4:] == [
        OrderEventType.AWAITING_STOCK, OrderEventType.STOCK_FILLED, OrderEventType.KEYS_RESERVED,
        OrderEventType.DELIVERY_SENT,
    ]
    assert Delivery.objects.filter(order=older, channel=Channel.EMAIL).count() == 1
    assert len(callbacks) == 2  # the email job of the filled order, the import's back-in-stock hook
    assert younger.events.filter(type=OrderEventType.STOCK_FILLED).count() == 0


def test_strict_queue_younger_order_waits_behind_the_oldest(make_product, make_unpaid_order):
    # given
    product = make_product()
    older = make_unpaid_order(product=product, quantity=3)
    younger = make_unpaid_order(product=product, quantity=1)
    _pay(older), _pay(younger)
    # when: one key arrives, enough for the younger order only
    _restock(product, "ONLY-1")
    # then
    older.refresh_from_db(), younger.refresh_from_db()
    assert (older.status, younger.status) == (OrderStatus.AWAITING_STOCK, OrderStatus.AWAITING_STOCK)
    assert CardKey.objects.get(product=product).status == CardKeyStatus.AVAILABLE


def test_unvoided_keys_fill_waiting_orders(make_product, make_unpaid_order):
    # given
    product = make_product(keys=1)
    key_id = CardKey.objects.get(product=product).pk
    keys_void(key_ids=[key_id], reason="suspected leak", actor="owner")
    order = make_unpaid_order(product=product)
    assert _pay(order) == OrderStatus.AWAITING_STOCK
    # when
    keys_unvoid(key_ids=[key_id], actor="owner")
    filled = order_fill_from_stock(product_id=product.pk)
    # then
    order.refresh_from_db()
    assert (filled, order.status) == (1, OrderStatus.FULFILLING)
    assert list(KeyAuditEvent.objects.filter(card_key_id=key_id).order_by("id").values_list("action", flat=True)) == [
        "VOIDED", "UNVOIDED", "SOLD", "DELIVERED",
    ]


def test_low_stock_alerts_once_per_crossing(make_product, make_unpaid_order, django_capture_on_commit_callbacks,
                                           settings):
    # given
    settings.OWNER_ALERT_EMAILS = ["owner@example.com"]
    product = make_product(keys=4, name="Gift card")
    KeyPolicy.objects.create(product=product, low_stock_threshold=2)
    # when: 4 → 3 (above), → 2 (crossing), → 1 (still low)
    for _ in range(3):
        _pay(make_unpaid_order(product=product))
    # then
    assert list(OwnerAlert.objects.values_list("kind", "subject")) == [
        ("LOW_STOCK", "Low stock: Gift card is down to 2 keys or fewer"),
    ]
    # when: restocked above the threshold, then down again
    _restock(product, "R1", "R2", "R3")
    for _ in range(2):
        _pay(make_unpaid_order(product=product))
    # then: a second crossing, a second alert
    assert OwnerAlert.objects.filter(kind="LOW_STOCK").count() == 2


def test_replacing_a_delivered_key(make_product, make_unpaid_order):
    # given
    product = make_product(keys=2)
    order = make_unpaid_order(product=product)
    _pay(order)
    old = CardKey.objects.get(order_line__order=order)
    # when
    new_id = order_key_replace(order_id=order.pk, key_id=old.pk, actor="staff:alice", reason="buyer: code rejected")
    # then
    old.refresh_from_db()
    new = CardKey.objects.get(pk=new_id)
    assert (old.status, old.order_line_id, old.void_reason) == (CardKeyStatus.VOID, new.order_line_id, "buyer: code rejected")
    assert new.status == CardKeyStatus.DELIVERED
    order.refresh_from_db()
    assert [k.pk for k in order_keys(order=order)] == [new_id]
    event = order.events.get(type=OrderEventType.KEY_REPLACED)
    assert (event.actor, event.data) == ("staff:alice", {"old_key": old.pk, "new_key": new_id, "reason": "buyer: code rejected"})
    assert list(KeyAuditEvent.objects.filter(card_key=old).order_by("id").values_list("action", flat=True)) == [
        "SOLD", "DELIVERED", "REPLACED",
    ]
    assert list(KeyAuditEvent.objects.filter(card_key=new).order_by("id").values_list("action", flat=True)) == [
        "SOLD", "DELIVERED",
    ]


def test_replacing_needs_stock_and_changes_nothing_without(make_product, make_unpaid_order):
    # given
    product = make_product(keys=1)
    order = make_unpaid_order(product=product)
    _pay(order)
    old = CardKey.objects.get(order_line__order=order)
    # when
    from inventory.services import KeysUnavailable

    with pytest.raises(KeysUnavailable):
        order_key_replace(order_id=order.pk, key_id=old.pk, actor="staff", reason="x")
    # then
    old.refresh_from_db()
    assert old.status == CardKeyStatus.DELIVERED
    assert not order.events.filter(type=OrderEventType.KEY_REPLACED).exists()


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_checkouts_for_ten_keys(make_product):
    # given
    product = make_product(keys=10)
    outcomes: list[str] = []
    messages: list[str] = []

    def buy(i: int) -> None:
        try:
            checkout_place_order(product_slug=product.slug, quantity=1, email=f"b{i}@example.com")
            outcomes.append("ORDER")
        except CheckoutError as exc:
            outcomes.append(exc.code)
            messages.append(exc.message)

    # when
    at_once(buy, range(30))
    # then
    assert Counter(outcomes) == {"ORDER": 10, "OUT_OF_STOCK": 20}
    assert Order.objects.filter(status=OrderStatus.PENDING_PAYMENT).count() == 10
    # the refused ones were told it is sold out (holds still being written may not be counted yet) ...
    assert all(m.startswith("Sold out.") for m in messages), messages
    # ... and the next buyer hears why and until when
    with pytest.raises(CheckoutError) as late:
        checkout_place_order(product_slug=product.slug, quantity=1, email="late@example.com")
    assert late.value.message.startswith(
        "Sold out. 10 more are held for buyers who have not paid yet; unpaid holds end from ")
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.HELD).count() == 10
