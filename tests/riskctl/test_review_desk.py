"""The review desk (decisions on the item page, next/previous), buyer_block's
kinds and expiries, and the block-buyer page."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus
from payments.models import Payment
from riskctl.identity import BuyerContext
from riskctl.models import ListEntry, ReviewItem, RiskEvent, Thresholds
from riskctl.services import buyer_block
from shop.models import OrderStatus
from shop.services import checkout_place_order
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db

DEVICE = "0123456789abcdef0123456789abcdef.1a2b3c4d"


@pytest.fixture
def hold(make_product, client, django_capture_on_commit_callbacks):
    """Place and pay orders that are held for review (a throw-away email scores 25 ≥ 20)."""
    product = make_product(keys=6)
    Thresholds.objects.create(product=product, review_at=20, block_at=90)

    def held(email="x@mailinator.com", ip="198.51.100.4", device=DEVICE, phone="13800138000"):
        order = checkout_place_order(product_slug=product.slug, quantity=1, email=email, client_ip=ip,
                                     device=device, phone=phone).order
        Payment.objects.create(order=order, provider="sandbox", reference=order.order_no, amount=order.amount,
                               currency=order.currency)
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
        order.refresh_from_db()
        assert order.status == OrderStatus.IN_REVIEW
        return order

    return held


def _desk(order) -> str:
    return reverse("admin:riskctl_reviewitem_change", args=[order.review.pk])


def _staff(*perms):
    user = get_user_model().objects.create_user(username="clerk", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    return user


def test_desk_shows_the_order_reasons_linked_orders_and_history(admin_client, hold):
    # given: the same buyer ordered before, and the desk is for the second order
    first = hold()
    second = hold()
    # when
    page = admin_client.get(_desk(second)).content.decode()
    # then
    assert f"<title>Review: order {second.order_no} |" in page
    assert f"Review of order {second.pk}" not in page
    assert "10.00 CNY" in page and "x@mailinator.com" in page and "13800138000" in page
    assert "The email is a throw-away (disposable) address" in page and "+25 points" in page
    assert f'href="/admin/shop/order/{first.pk}/change/">{first.order_no}</a>' in page  # linked, with its status
    assert "Being checked" in page and "Email, IP address, Device, Phone" in page
    assert 'id="kd-approve"' in page and 'id="kd-reject"' in page and 'id="kd-block"' in page
    event = RiskEvent.objects.filter(order_id=first.pk).order_by("at").first()
    assert timezone.localtime(event.at).strftime("%Y-%m-%d %H:%M") in page  # the shop's time zone
    assert "1 other buyer" not in page


def test_approve_from_the_desk_delivers_and_opens_the_next_waiting(admin_client, hold,
                                                                   django_capture_on_commit_callbacks):
    # given
    first, second = hold(), hold(email="y@mailinator.com")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_desk(first), {"decision": "approve", "approve-note": "known buyer"})
    # then
    assert response.status_code == 302 and response.url == _desk(second)
    first.refresh_from_db()
    assert first.status in (OrderStatus.FULFILLING, OrderStatus.DELIVERED)
    review = ReviewItem.objects.get(order=first)
    assert (review.outcome, review.note, review.decided_by.username) == ("APPROVED", "known buyer", "admin")
    page = admin_client.get(response.url).content.decode()
    assert f"Order {first.order_no} approved: the keys are being delivered." in page


def test_reject_from_the_desk_refunds_and_goes_back_to_the_queue(admin_client, hold,
                                                                 django_capture_on_commit_callbacks):
    # given
    order = hold()
    key = CardKey.objects.get(order_line__order=order)
    # when: a rejection needs a note
    refused = admin_client.post(_desk(order), {"decision": "reject", "reject-note": ""})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_desk(order), {"decision": "reject", "reject-note": "stolen card"})
    # then
    assert refused.status_code == 200 and "This field is required." in refused.content.decode()
    assert response.status_code == 302 and response.url == reverse("admin:riskctl_reviewitem_changelist")
    order.refresh_from_db()
    key.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert (key.status, key.order_line_id) == (CardKeyStatus.AVAILABLE, None)
    assert not ListEntry.objects.exists()


def test_reject_and_block_blocks_the_chosen_identifiers_for_the_chosen_time(admin_client, hold,
                                                                           django_capture_on_commit_callbacks):
    # given
    order = hold()
    started = timezone.now()
    # when: email for the default 30 days, IP for 24 h, device never; phone not ticked
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_desk(order), {
            "decision": "block", "block-note": "fraud", "block-block_email": "on", "block-until_email": "30d",
            "block-block_ip": "on", "block-until_ip": "24h", "block-block_device": "on",
            "block-until_device": "never", "block-until_phone": "30d",
        }, follow=True)
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    entries = {e.kind: e for e in ListEntry.objects.all()}
    assert sorted(entries) == ["DEVICE", "EMAIL", "IP"]
    assert entries["DEVICE"].expires_at is None
    assert abs(entries["EMAIL"].expires_at - started - timedelta(days=30)) < timedelta(minutes=1)
    assert abs(entries["IP"].expires_at - started - timedelta(hours=24)) < timedelta(minutes=1)
    assert order.order_no in entries["EMAIL"].reason and entries["EMAIL"].created_by.username == "admin"
    assert "rejected and refunded; blocked: Email until" in response.content.decode()


def test_deciding_a_decided_item_says_so(admin_client, hold, django_capture_on_commit_callbacks):
    # given
    order = hold()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(_desk(order), {"decision": "reject", "reject-note": "no"})
    # when
    response = admin_client.post(_desk(order), {"decision": "approve", "approve-note": ""}, follow=True)
    # then
    assert response.status_code == 200
    assert f"Order {order.order_no} was already decided (Rejected), nothing was changed." in \
        response.content.decode()
    assert ReviewItem.objects.get(order=order).outcome == "REJECTED"


def test_next_and_previous_walk_the_undecided_items_oldest_first(admin_client, hold):
    # given
    a, b, c = hold(), hold(email="b@mailinator.com"), hold(email="c@mailinator.com")
    ReviewItem.objects.filter(order=a).update(opened_at=timezone.now() - timedelta(hours=2, minutes=5))
    # when
    middle = admin_client.get(_desk(b)).content.decode()
    first = admin_client.get(_desk(a)).content.decode()
    queue = admin_client.get(reverse("admin:riskctl_reviewitem_changelist")).content.decode()
    # then
    assert f'id="kd-prev" href="{_desk(a)}"' in middle and f'id="kd-next" href="{_desk(c)}"' in middle
    assert "2 of 3 waiting" in middle
    assert 'id="kd-prev"' not in first and f'id="kd-next" href="{_desk(b)}"' in first
    assert "Review queue: 3 waiting, the oldest for 2 h 5 min" in queue
    assert queue.index(a.order_no) < queue.index(b.order_no) < queue.index(c.order_no)


def test_deciding_needs_change_and_blocking_needs_add_listentry(client, hold):
    # given: a clerk who may decide but not block
    order = hold()
    client.force_login(_staff("view_reviewitem", "change_reviewitem"))
    # when
    page = client.get(_desk(order)).content.decode()
    blocked = client.post(_desk(order), {"decision": "block", "block-note": "x", "block-block_email": "on",
                                         "block-until_email": "30d"})
    # then
    assert 'id="kd-approve"' in page and 'id="kd-block"' not in page
    assert blocked.status_code == 403 and not ListEntry.objects.exists()
    client.force_login(_staff_viewer())
    assert client.post(_desk(order), {"decision": "approve"}).status_code == 403
    assert ReviewItem.objects.get(order=order).decided_at is None


def _staff_viewer():
    user = get_user_model().objects.create_user(username="viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_reviewitem"))
    return user


# --- buyer_block -------------------------------------------------------------------


def test_buyer_block_defaults_to_30_days_and_24_hours_for_the_ip():
    # given
    buyer = BuyerContext(email="a@example.com", ip="198.51.100.9", device=DEVICE, phone="+8613800000000")
    now = timezone.now()
    # when
    entries = {e.kind: e.expires_at - now for e in buyer_block(buyer=buyer, reason="chargeback")}
    # then
    assert {kind: round(span / timedelta(hours=1)) for kind, span in entries.items()} == {
        "EMAIL": 720, "IP": 24, "DEVICE": 720, "PHONE": 720}


def test_buyer_block_takes_kinds_and_expiries_and_keeps_the_longer_block():
    # given: the email is already blocked for good, the IP's old block has lapsed
    buyer = BuyerContext(email="a@example.com", ip="198.51.100.9", device=DEVICE)
    ListEntry.objects.create(list_type="BLOCK", kind="EMAIL", value="a@example.com", reason="old")
    ListEntry.objects.create(list_type="BLOCK", kind="IP", value="198.51.100.9", reason="old",
                             expires_at=timezone.now() - timedelta(days=1))
    until = timezone.now() + timedelta(days=7)
    # when
    entries = buyer_block(buyer=buyer, reason="again", kinds=["EMAIL", "IP"], expires_at={"EMAIL": until, "IP": until})
    # then
    assert [(e.kind, e.expires_at, e.reason) for e in entries] == [("EMAIL", None, "old"), ("IP", until, "again")]
    assert not ListEntry.objects.filter(kind="DEVICE").exists()


# --- the block-buyer page -------------------------------------------------------------


def test_block_page_warns_when_others_used_the_ip(admin_client, hold):
    # given: another buyer ordered from the same IP
    hold(email="other@mailinator.com", device="", phone="")
    order = hold()
    url = reverse("admin:riskctl_block_buyer", args=[order.pk])
    # when
    page = admin_client.get(url).content.decode()
    # then
    assert url == f"/admin/riskctl/listentry/block/{order.pk}/"
    assert "1 other buyer ordered from this IP address in the last 30 days — blocking it may block them too." in page
    assert 'name="block-block_ip"' in page and 'name="block-block_ip" id="id_block-block_ip" checked' not in page
    assert '<option value="24h" selected>' in page and '<option value="30d" selected>' in page
    assert '<option value="never">Never expires</option>' in page


def test_block_page_blocks_and_returns_to_next(admin_client, hold):
    # given
    order = hold()
    order_page = reverse("admin:shop_order_change", args=[order.pk])
    url = reverse("admin:riskctl_block_buyer", args=[order.pk]) + f"?next={order_page}"
    # when
    response = admin_client.post(url, {"block-block_email": "on", "block-until_email": "7d",
                                       "block-block_phone": "on", "block-until_phone": "never",
                                       "block-until_ip": "24h", "block-until_device": "30d", "block-note": "spam"})
    elsewhere = admin_client.post(reverse("admin:riskctl_block_buyer", args=[order.pk]) + "?next=https://evil.example/",
                                  {"block-block_device": "on", "block-until_device": "30d"})
    # then
    assert response.status_code == 302 and response.url == order_page
    assert elsewhere.url == order_page
    entries = {e.kind: e for e in ListEntry.objects.all()}
    assert sorted(entries) == ["DEVICE", "EMAIL", "PHONE"]
    assert entries["PHONE"].expires_at is None
    assert abs(entries["EMAIL"].expires_at - timezone.now() - timedelta(days=7)) < timedelta(minutes=1)
    assert entries["EMAIL"].reason == f"blocked from order {order.order_no}: spam"


def test_block_page_needs_add_listentry(client, hold):
    order = hold()
    client.force_login(_staff("view_order", "view_listentry"))
    url = reverse("admin:riskctl_block_buyer", args=[order.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"block-block_email": "on", "block-until_email": "30d"}).status_code == 403
    assert not ListEntry.objects.exists()


def test_block_page_asks_for_at_least_one_identifier(admin_client, hold):
    order = hold()
    response = admin_client.post(reverse("admin:riskctl_block_buyer", args=[order.pk]),
                                 {"block-until_email": "30d"})
    assert response.status_code == 200 and "Tick at least one identifier to block." in response.content.decode()
    assert not ListEntry.objects.exists()


def test_an_order_refunded_outside_the_desk_leaves_the_queue_and_the_dashboard(admin_client, hold):
    # given: two held orders; staff refund one from its order page (not the desk)
    from payments.services import payment_refund
    from riskctl.selectors import review_queue
    from shop.ops.dashboard import dashboard_context

    refunded, waiting = hold(), hold(email="y@mailinator.com")
    # when
    payment_refund(order=refunded, actor="staff:admin", reason="buyer asked")
    # then: the desk offers only the order still in review, and the dashboard agrees
    assert list(review_queue().values_list("order_id", flat=True)) == [waiting.pk]
    item = ReviewItem.objects.get(order=refunded)
    assert (item.outcome, item.decided_by, item.note) == (
        "REJECTED", None, "closed by refund (staff:admin): buyer asked")
    context = dashboard_context()
    tiles = {tile["key"]: tile["count"] for tile in context["needing_action"]}
    assert context["review_queue"] == tiles["in-review"] == 1
