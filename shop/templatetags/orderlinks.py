"""``{% order_link order %}``: the absolute, signed link to an order page for
emails, SMS and the order page's "Copy link". Templates reach it by name, so
the delivery app renders it without importing the shop. The link carries the
order's ``link_version``: once staff revoke the order's links, every link
made before stops opening it."""

from django import template
from django.conf import settings
from django.urls import reverse

from shop.access import order_link_sign

register = template.Library()


@register.simple_tag
def order_link(order) -> str:
    path = reverse("shop:order", args=[order.order_no])
    return f"{settings.SITE_URL}{path}?s={order_link_sign(order.order_no, order.link_version)}"
