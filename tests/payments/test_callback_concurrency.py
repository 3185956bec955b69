"""Fifty payments racing for twenty keys: nobody gets a key twice, nobody is oversold."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from delivery.models import Channel, Delivery, DeliveryStatus
from inventory.models import CardKey, CardKeyStatus
from shop.models import Order, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

BUYERS = 50
KEYS = 20


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_payments_for_twenty_keys(make_product, make_unpaid_order):
    # given
    product = make_product(keys=KEYS)
    orders = [make_unpaid_order(product=product, email=f"buyer{i}@example.com") for i in range(BUYERS)]
    notices = [sandbox_notice(order) for order in orders]
    start = threading.Barrier(BUYERS)
    replies: list[bytes] = [b""] * BUYERS
    errors: list[BaseException] = []

    def pay(i: int) -> None:
        try:
            client = Client()
            start.wait(timeout=30)
            replies[i] = client.post(NOTIFY_URL, notices[i]).content
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(BUYERS)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then
    assert errors == []
    assert replies == [b"success"] * BUYERS
    statuses = Counter(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True))
    assert statuses == {OrderStatus.FULFILLING: KEYS, OrderStatus.AWAITING_STOCK: BUYERS - KEYS}
    delivered = CardKey.objects.filter(product=product, status=CardKeyStatus.DELIVERED)
    assert delivered.count() == KEYS
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count() == 0
    # each fulfilled order holds exactly one key, and no key is on two lines
    lines = list(delivered.values_list("order_line_id", flat=True))
    assert len(set(lines)) == KEYS
    fulfilled = Order.objects.filter(pk__in=[o.pk for o in orders], status=OrderStatus.FULFILLING)
    assert sorted(CardKey.objects.filter(order_line__order__in=fulfilled).values_list("order_line__order_id", flat=True)) == sorted(
        fulfilled.values_list("pk", flat=True)
    )
    # the inbox of every fulfilled order was written; awaiting orders got no delivery at all
    inbox = Delivery.objects.filter(channel=Channel.INBOX, status=DeliveryStatus.SENT)
    assert sorted(inbox.values_list("order_id", flat=True)) == sorted(fulfilled.values_list("pk", flat=True))
    assert not Delivery.objects.filter(order__status=OrderStatus.AWAITING_STOCK).exists()
