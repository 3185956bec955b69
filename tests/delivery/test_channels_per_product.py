"""Which channels an order gets: the product's setting and what the buyer gave."""

import pytest
from django.db import transaction

from delivery.models import Channel, Delivery
from shop.models import Order
from shop.services import checkout_place_order, order_fulfil, order_mark_paid

pytestmark = pytest.mark.django_db


def _paid(product, phone=""):
    order = checkout_place_order(product_slug=product.slug, quantity=1, email="b@example.com", phone=phone).order
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=locked, actor="test")
        order_fulfil(order=locked)
    return order


@pytest.mark.parametrize("email, sms, phone, channels", [
    (True, True, "+8613800000000", {Channel.INBOX, Channel.EMAIL, Channel.SMS}),
    (True, True, "", {Channel.INBOX, Channel.EMAIL}),
    (True, False, "+8613800000000", {Channel.INBOX, Channel.EMAIL}),
    (False, True, "+8613800000000", {Channel.INBOX, Channel.SMS}),
])
def test_channels_follow_the_product_and_the_buyer(make_product, email, sms, phone, channels):
    # given
    product = make_product(keys=1, deliver_by_email=email, deliver_by_sms=sms)
    # when
    order = _paid(product, phone=phone)
    # then
    assert set(Delivery.objects.filter(order=order).values_list("channel", flat=True)) == channels
