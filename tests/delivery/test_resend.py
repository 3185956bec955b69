"""Buyer resend: the Resend button and POST /api/v1/orders/<order_no>/resend,
to the order's own channels only, rate-limited per order and per IP."""

import re

import pytest
from django.urls import reverse

from delivery.models import Delivery, DeliveryStatus
from shop.access import order_token_new
from shop.models import Order, OrderEventType
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(paid_order, run_worker, smtp_server):
    """A delivered order and its buyer's token."""
    run_worker()
    token, token_hash = order_token_new()
    Order.objects.filter(pk=paid_order.pk).update(token_hash=token_hash)
    paid_order.refresh_from_db()
    assert paid_order.status == "DELIVERED" and len(smtp_server.messages) == 1
    return paid_order, token


def _resend(client, order_no: str, token: str, ip: str = "198.51.100.7"):
    return client.post(
        reverse("shop:api-order-resend", args=[order_no]), HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=ip
    )


def test_api_resend_sends_the_same_key_again_to_the_orders_email(client, delivered, run_worker, smtp_server,
                                                                 django_capture_on_commit_callbacks):
    # given
    order, token = delivered
    delivery = email_of(order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = _resend(client, order.order_no, token)
    run_worker()
    # then
    assert (response.status_code, response.json()) == (202, {"order_no": order.order_no, "resent": ["EMAIL"]})
    assert len(smtp_server.messages) == 2
    assert smtp_server.messages[1].rcpt_tos == ["buyer@example.com"]
    assert b"GIFT-KEY-00000" in smtp_server.messages[1].content
    assert f"Message-ID: <delivery-{delivery.pk}.r1.{order.order_no}@".encode() in smtp_server.messages[1].content
    delivery.refresh_from_db()
    assert (delivery.status, delivery.resends) == (DeliveryStatus.SENT, 1)
    event = order.events.get(type=OrderEventType.RESEND_REQUESTED)
    assert (event.actor, event.data) == ("buyer", {"channels": ["EMAIL"]})


def test_api_resend_is_limited_per_order(client, delivered, settings):
    # given
    settings.RESEND_RATE_PER_ORDER = "2/h"
    order, token = delivered
    # when
    statuses = [_resend(client, order.order_no, token, ip=f"198.51.100.{i}").status_code for i in range(2)]
    limited = _resend(client, order.order_no, token, ip="198.51.100.99")
    # then
    assert statuses == [202, 202]
    assert limited.status_code == 429
    error = limited.json()["error"]
    wait = int(limited["Retry-After"])
    assert 0 < wait <= 3600
    assert (error["code"], error["message"]) == ("RATE_LIMITED", f"This order was resent recently; try again in {wait} s.")
    assert len(error["ref"]) == 12
    assert order.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 2


def test_api_resend_is_limited_per_ip(client, delivered, settings):
    # given
    settings.RESEND_RATE_PER_IP = "2/h"
    order, token = delivered
    # when
    statuses = [_resend(client, order.order_no, token).status_code for _ in range(3)]
    # then
    assert statuses == [202, 202, 429]
    assert order.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 2


def test_api_resend_with_a_wrong_token_is_not_found_and_costs_the_buyer_nothing(client, delivered, settings):
    # given
    settings.RESEND_RATE_PER_ORDER = "1/h"
    order, token = delivered
    # when
    wrong = [_resend(client, order.order_no, "not-the-token", ip=f"203.0.113.{i}") for i in range(3)]
    right = _resend(client, order.order_no, token)
    # then
    assert [r.status_code for r in wrong] == [404, 404, 404]
    assert wrong[0].json()["error"]["code"] == "ORDER_NOT_FOUND"
    assert right.status_code == 202


def test_api_resend_needs_the_token(client, delivered):
    # given
    order, _ = delivered
    # when
    response = client.post(reverse("shop:api-order-resend", args=[order.order_no]))
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH_REQUIRED"
    assert email_of(order).resends == 0


def test_api_resend_before_delivery_is_refused_and_changes_nothing(client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=1))
    token, token_hash = order_token_new()
    Order.objects.filter(pk=order.pk).update(token_hash=token_hash)
    # when
    response = _resend(client, order.order_no, token)
    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "RESEND_NOT_ALLOWED"
    assert Delivery.objects.filter(order=order).count() == 0
    assert order.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 0


def test_resend_button_on_the_order_page_resends_and_says_so(client, delivered, run_worker, smtp_server, settings,
                                                             django_capture_on_commit_callbacks):
    # given: the buyer opened the order page from their link
    settings.RESEND_RATE_PER_ORDER = "1/h"
    order, token = delivered
    page = client.get(reverse("shop:order", args=[order.order_no]), {"t": token}, follow=True)
    resend_url = reverse("shop:order-resend", args=[order.order_no])
    assert f'action="{resend_url}"' in page.content.decode()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(resend_url, follow=True)
        second = client.post(resend_url, follow=True)
    run_worker()
    # then
    assert "On its way again to buyer@example.com." in first.content.decode()
    # within the hour's window, at a time of day the buyer can read (their zone)
    shown = re.search(r"You can ask again at (.+?) \(in about (\d+) min\)", second.content.decode())
    assert shown is not None, second.content.decode()
    assert 1 <= int(shown.group(2)) <= 60
    assert len(smtp_server.messages) == 2
    assert email_of(order).resends == 1


def test_resend_button_is_not_for_strangers(client, delivered):
    # given: a browser that never opened the order
    order, _ = delivered
    # when
    response = client.post(reverse("shop:order-resend", args=[order.order_no]))
    # then
    assert response.status_code == 404
    assert email_of(order).resends == 0


def test_the_per_address_resend_limit_also_says_when(client, delivered, settings, django_capture_on_commit_callbacks):
    # given: a generous per-order budget, one resend per hour per address
    settings.RESEND_RATE_PER_ORDER = "100/h"
    settings.RESEND_RATE_PER_IP = "1/h"
    order, token = delivered
    client.get(reverse("shop:order", args=[order.order_no]), {"t": token}, follow=True)
    resend_url = reverse("shop:order-resend", args=[order.order_no])
    # when
    with django_capture_on_commit_callbacks(execute=True):
        client.post(resend_url, follow=True)
        second = client.post(resend_url, follow=True)
    # then: the wait is the per-address window's, read from the counter the view's limit keeps
    from django.test import RequestFactory
    from django_ratelimit.core import get_usage

    from shop.views.order import RESEND_IP_GROUP

    probe = RequestFactory().post(resend_url, REMOTE_ADDR="127.0.0.1")
    usage = get_usage(probe, group=RESEND_IP_GROUP, key="ip", rate="1/h", method="POST", increment=False)
    assert usage["count"] == 2
    shown = re.search(r"in about (\d+) min", second.content.decode())
    assert shown is not None and int(shown.group(1)) == max(1, round(usage["time_left"] / 60))
