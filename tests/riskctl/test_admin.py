"""The review queue and the rules in the admin."""

import pytest

from inventory.models import CardKey, CardKeyStatus
from riskctl.models import ListEntry, ReviewItem, Rule, Thresholds
from shop.models import OrderEventType, OrderStatus
from shop.services import checkout_place_order
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db

QUEUE_URL = "/admin/riskctl/reviewitem/"


@pytest.fixture
def held_order(make_product, client, django_capture_on_commit_callbacks):
    """An order paid through the sandbox callback and held for review."""
    product = make_product(keys=2)
    Thresholds.objects.create(product=product, review_at=20, block_at=90)
    order = checkout_place_order(product_slug=product.slug, quantity=1, email="x@mailinator.com",
                                 client_ip="198.51.100.4").order
    from payments.models import Payment

    Payment.objects.create(order=order, provider="sandbox", reference=order.order_no, amount=order.amount,
                           currency=order.currency)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
    order.refresh_from_db()
    assert order.status == OrderStatus.IN_REVIEW
    return order


def test_queue_lists_the_held_order_with_its_signals(admin_client, held_order):
    # when
    response = admin_client.get(QUEUE_URL)
    # then
    content = response.content.decode()
    assert "Review queue: 1 waiting, the oldest for 0 s" in content
    assert "The email is a throw-away (disposable) address" in content and "x@mailinator.com" in content
    detail = admin_client.get(f"{QUEUE_URL}{held_order.review.pk}/change/").content.decode()
    assert f"Review: order {held_order.order_no}" in detail and "Order placed" in detail
    assert "feature emails_per_device_24h" not in detail and "198.51.100.4" in detail


def test_approve_from_the_queue_delivers(admin_client, held_order, django_capture_on_commit_callbacks):
    # given
    selection = {"action": "approve", "_selected_action": [held_order.review.pk]}
    # when: the note is asked for first
    asking = admin_client.post(QUEUE_URL, selection)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(QUEUE_URL, {**selection, "apply": "1", "note": "checked the buyer"}, follow=True)
    # then
    assert asking.templates[0].name == "admin/riskctl/reviewitem/decide.html"
    assert "1 approved." in response.content.decode()
    held_order.refresh_from_db()
    assert held_order.status == OrderStatus.FULFILLING
    review = ReviewItem.objects.get(order=held_order)
    assert (review.outcome, review.note, review.decided_by.username) == ("APPROVED", "checked the buyer", "admin")


def test_reject_from_the_queue_refunds_releases_and_blocks(admin_client, held_order,
                                                            django_capture_on_commit_callbacks):
    # given
    key = CardKey.objects.get(order_line__order=held_order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(QUEUE_URL, {
            "action": "reject", "_selected_action": [held_order.review.pk], "apply": "1",
            "note": "stolen card", "block_buyer": "on",
        }, follow=True)
    # then
    assert "1 rejected and refunded." in response.content.decode()
    held_order.refresh_from_db()
    key.refresh_from_db()
    assert held_order.status == OrderStatus.REFUNDED
    assert (key.status, key.order_line_id) == (CardKeyStatus.AVAILABLE, None)
    assert held_order.events.filter(type=OrderEventType.REVIEW_REJECTED, actor="staff:admin").count() == 1
    assert sorted(ListEntry.objects.values_list("kind", "value")) == [
        ("EMAIL", "x@mailinator.com"), ("IP", "198.51.100.4"),
    ]


def test_editing_a_rule_makes_a_new_version(admin_client):
    # given
    rule = Rule.objects.get(code="disposable-email")
    # when
    admin_client.post(f"/admin/riskctl/rule/{rule.pk}/change/", {
        "code": rule.code, "description": rule.description, "feature": rule.feature, "operator": rule.operator,
        "threshold": "1", "action": "SCORE", "points": "35", "active": "on",
    })
    # then
    rule.refresh_from_db()
    assert (rule.points, rule.version) == (35, 2)


def test_block_and_unblock_a_buyer_from_the_order(admin_client, make_product):
    # given
    product = make_product(keys=2)
    order = checkout_place_order(product_slug=product.slug, quantity=1, email="A@Example.com",
                                 client_ip="198.51.100.8").order
    ListEntry.objects.create(list_type="BLOCK", kind="EMAIL_DOMAIN", value="example.com", reason="domain")
    # when
    admin_client.post("/admin/shop/order/", {"action": "block_buyers", "_selected_action": [order.pk]})
    blocked = sorted(ListEntry.objects.exclude(kind="EMAIL_DOMAIN").values_list("kind", "value"))
    response = admin_client.post("/admin/shop/order/", {"action": "unblock_buyers", "_selected_action": [order.pk]},
                                 follow=True)
    # then
    assert blocked == [("EMAIL", "a@example.com"), ("IP", "198.51.100.8")]
    assert not ListEntry.objects.exclude(kind="EMAIL_DOMAIN").exists()
    assert "unblocked, but still blocked by Block list: Email domain (wildcards: *.example.com) example.com" in \
        response.content.decode()
    detail = admin_client.get(f"/admin/shop/order/{order.pk}/change/").content.decode()
    assert "Checkout: ALLOW (score 0" in detail
