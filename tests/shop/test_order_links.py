"""The order link: opens the order on another device, carries the order's
link version, and stops working once staff revoke the order's links."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from payments.models import Payment
from shop.access import SESSION_EMAILS, SESSION_ORDERS
from shop.models import Order, OrderEvent, OrderEventType
from shop.services.order_links import order_links_revoke
from shop.templatetags.orderlinks import order_link

pytestmark = pytest.mark.django_db

DEAD = "This link no longer works"


@pytest.fixture
def paid(pay, make_product, make_unpaid_order):
    return pay(make_unpaid_order(product=make_product(keys=2, slug="gift"), email="Buyer@example.com"))


def _path(url: str) -> str:
    """The request target of an absolute link (the test client speaks paths)."""
    parts = urlsplit(url.replace("&amp;", "&"))
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _page(response) -> str:
    """The page without its per-response CSRF tokens."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_the_link_opens_the_order_in_a_fresh_browser_and_leaves_the_address_bar(paid):
    # given: another device, which never saw the order
    other = Client()
    # when
    opened = other.get(_path(order_link(paid)))
    page = other.get(opened["Location"])
    # then: the secret is dropped from the address bar; the page is the order's
    assert (opened.status_code, opened["Location"]) == (302, f"/orders/{paid.order_no}/")
    assert page.status_code == 200 and paid.order_no in page.content.decode()
    assert Client().get(f"/orders/{paid.order_no}/").status_code == 404  # a third browser without the link


def test_the_bare_order_address_on_another_device_says_how_to_open_the_order(paid):
    # given: the address copied from the address bar, on a device that never opened the order
    other = Client()
    # when
    bare = other.get(f"/orders/{paid.order_no}/")
    unknown = other.get("/orders/T9999999999999/")
    zh = other.get(f"/orders/{paid.order_no}/", HTTP_ACCEPT_LANGUAGE="zh-Hans")
    # then: how to open it here (the email's link, Copy link, Find my order), the
    # same page whether or not the order exists, and no trace of the order
    assert bare.status_code == unknown.status_code == 404
    assert "Open your order on this device" in bare.content.decode()
    assert 'href="/lookup/"' in bare.content.decode()
    assert _page(bare) == _page(unknown).replace("T9999999999999", paid.order_no)
    assert paid.email not in bare.content.decode() and "gift" not in bare.content.decode().lower()
    assert "在此设备上打开订单" in zh.content.decode()


def test_a_revoked_link_shows_the_same_polite_page_as_an_unknown_one(paid):
    # given
    link = _path(order_link(paid))
    order_links_revoke(order_ids=[paid.pk], actor="staff:test")
    unknown = link.replace(paid.order_no, "99999999999999")
    # when
    revoked = Client().get(link)
    missing = Client().get(unknown)
    # then
    assert revoked.status_code == missing.status_code == 404
    assert DEAD in revoked.content.decode() and 'href="/lookup/"' in revoked.content.decode()
    # the same page but for the address itself (canonical link, language switch)
    assert _page(revoked).replace(paid.order_no, "N") == _page(missing).replace("99999999999999", "N")


def test_revoking_ends_the_browsers_that_opened_the_order_and_a_new_link_works(paid, client):
    # given: this browser opened the order through its link
    assert client.get(_path(order_link(paid)), follow=True).status_code == 200
    # when
    revoked = order_links_revoke(order_ids=[paid.pk], actor="staff:test", note="link posted on a forum")
    paid.refresh_from_db()
    # then
    assert revoked == {paid.order_no: 2} and paid.link_version == 2
    assert client.get(f"/orders/{paid.order_no}/").status_code == 404
    assert client.get(f"/orders/{paid.order_no}/status").status_code == 404
    fresh = Client()
    assert fresh.get(_path(order_link(paid)), follow=True).status_code == 200
    event = OrderEvent.objects.get(order=paid, type=OrderEventType.LINKS_REVOKED)
    assert (event.actor, event.data) == ("staff:test", {"link_version": 2, "note": "link posted on a forum"})


def test_a_link_signed_before_versions_opens_the_order_only_at_version_1(paid):
    # given: a link as the shop signed them before (the order number alone)
    old = f"/orders/{paid.order_no}/?s={signing.dumps(paid.order_no, salt='kamidrop.order-link', compress=True)}"
    # when / then
    assert Client().get(old)["Location"] == f"/orders/{paid.order_no}/"
    order_links_revoke(order_ids=[paid.pk], actor="staff:test")
    after = Client().get(old)
    assert after.status_code == 404 and DEAD in after.content.decode()


def test_a_session_granted_before_versions_counts_as_version_1(paid, client):
    # given: a browser session from before grants carried a version
    session = client.session
    session[SESSION_ORDERS] = [paid.order_no]
    session.save()
    assert client.get(f"/orders/{paid.order_no}/").status_code == 200
    # when
    order_links_revoke(order_ids=[paid.pk], actor="staff:test")
    # then
    assert client.get(f"/orders/{paid.order_no}/").status_code == 404


def test_a_browser_signed_in_with_the_orders_email_keeps_it_after_revoking(paid, client):
    # given
    session = client.session
    session[SESSION_EMAILS] = ["buyer@example.com"]
    session.save()
    # when
    order_links_revoke(order_ids=[paid.pk], actor="staff:test")
    # then
    assert client.get(f"/orders/{paid.order_no}/").status_code == 200


def test_the_emailed_link_carries_the_version_and_stops_after_revoking(pay, make_product, make_unpaid_order,
                                                                        run_worker):
    # given: an order paid and its keys emailed (the email outbox sent by the worker)
    order = pay(make_unpaid_order(product=make_product(keys=1, slug="mail"), email="buyer@example.com"))
    run_worker()
    [email] = [m for m in mail.outbox if "buyer@example.com" in m.to]
    emailed = re.search(r"https?://\S+/orders/\S+", email.body).group(0)
    # then: it opens on any device, until revoked
    assert Client().get(_path(emailed))["Location"] == f"/orders/{order.order_no}/"
    order_links_revoke(order_ids=[order.pk], actor="staff:test")
    assert Client().get(_path(emailed)).status_code == 404
    order.refresh_from_db()
    assert _path(order_link(order)) != _path(emailed)


def test_the_order_page_offers_copy_link_with_its_current_signed_link(paid, client):
    # given
    client.get(_path(order_link(paid)))
    order_links_revoke(order_ids=[paid.pk], actor="staff:test")
    paid.refresh_from_db()
    client.get(_path(order_link(paid)))
    # when
    page = client.get(f"/orders/{paid.order_no}/").content.decode()
    # then: the link in the page is the live one (version 2), selectable without JavaScript
    field = re.search(r'<input id="share-url" type="text" readonly value="([^"]+)"', page)
    assert field is not None and field.group(1).replace("&amp;", "&") == order_link(paid)
    assert 'class="copy-link" data-target="share-url"' in page and "Copy link" in page
    assert Client().get(_path(field.group(1)))["Location"] == f"/orders/{paid.order_no}/"


def test_the_order_page_and_the_dead_link_page_send_no_referrer_to_other_sites(paid, client):
    # given
    client.get(_path(order_link(paid)))
    # when
    page = client.get(f"/orders/{paid.order_no}/")
    dead = Client().get(f"/orders/{paid.order_no}/?s=forged")
    # then: same-origin, not no-referrer: that would also send "Origin: null" on the page's own POST forms
    assert page["Referrer-Policy"] == "same-origin"
    assert dead.status_code == 404 and dead["Referrer-Policy"] == "same-origin"


def test_a_browser_that_may_see_the_order_is_sent_to_it_whatever_the_link(paid, client):
    client.get(_path(order_link(paid)))
    assert client.get(f"/orders/{paid.order_no}/?s=stale")["Location"] == f"/orders/{paid.order_no}/"


# --- Pay now and the hold ----------------------------------------------------------

def _unpaid_with_hold(make_unpaid_order, make_product, client, *, minutes: int) -> Order:
    order = make_unpaid_order(product=make_product(keys=2, slug="held"))
    Order.objects.filter(pk=order.pk).update(hold_expires_at=timezone.now() + timedelta(minutes=minutes))
    order.refresh_from_db()
    client.get(_path(order_link(order)))
    return order


def test_an_unpaid_order_counts_its_hold_down_next_to_pay_now(make_unpaid_order, make_product, client):
    order = _unpaid_with_hold(make_unpaid_order, make_product, client, minutes=10)
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    assert 'id="hold-countdown" data-until="' in page and "Pay now with" in page
    assert 'class="hold-over" id="hold-over" role="status" hidden' in page  # shown by order.js at zero


def test_a_lapsed_hold_says_so_and_pay_now_is_gone(make_unpaid_order, make_product, client):
    # given
    order = _unpaid_with_hold(make_unpaid_order, make_product, client, minutes=-1)
    payments = Payment.objects.filter(order=order).count()
    # when
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    pay = client.post(f"/orders/{order.order_no}/pay", {"method": "sandbox"}, follow=True)
    # then
    assert "The time to pay ended at" in page and "Pay now with" not in page and 'id="hold-countdown"' not in page
    assert "The time to pay for this order is over" in pay.content.decode()
    assert Payment.objects.filter(order=order).count() == payments


# --- staff -------------------------------------------------------------------------

def test_staff_revoke_from_the_order_page_with_a_note(paid, admin_client, admin_user):
    # given
    change = admin_client.get(f"/admin/shop/order/{paid.pk}/change/").content.decode()
    url = f"/admin/shop/order/{paid.pk}/revoke-links/"
    # when
    confirm = admin_client.get(url)
    done = admin_client.post(url, {"note": "buyer says the link leaked"})
    # then
    assert 'id="order-action-revoke-links"' in change and f'href="{url}"' in change
    assert confirm.status_code == 200 and "Revoke order links" in confirm.content.decode()
    assert done.status_code == 302 and done["Location"] == f"/admin/shop/order/{paid.pk}/change/"
    paid.refresh_from_db()
    assert paid.link_version == 2
    event = OrderEvent.objects.get(order=paid, type=OrderEventType.LINKS_REVOKED)
    assert (event.actor, event.data["note"]) == (f"staff:{admin_user.username}", "buyer says the link leaked")
    assert LogEntry.objects.filter(object_id=str(paid.pk), change_message__startswith="Revoked the order's links").exists()


def test_staff_without_the_permission_cannot_revoke(paid, client):
    # given: staff who may only look at orders
    user = User.objects.create_user("viewer", password="pw-123456", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(user)
    # when
    refused = client.post(f"/admin/shop/order/{paid.pk}/revoke-links/", {"note": ""})
    page = client.get(f"/admin/shop/order/{paid.pk}/change/").content.decode()
    # then
    assert refused.status_code == 403 and "order-action-revoke-links" not in page
    paid.refresh_from_db()
    assert paid.link_version == 1 and not OrderEvent.objects.filter(type=OrderEventType.LINKS_REVOKED).exists()


def test_staff_revoke_many_orders_from_the_list(pay, make_product, make_unpaid_order, admin_client):
    # given
    product = make_product(keys=3, slug="many")
    first, second = (pay(make_unpaid_order(product=product)) for _ in range(2))
    # when
    response = admin_client.post("/admin/shop/order/", {"action": "revoke_links",
                                                        "_selected_action": [first.pk, second.pk]})
    # then
    assert response.status_code == 302
    assert list(Order.objects.filter(pk__in=[first.pk, second.pk]).values_list("link_version", flat=True)) == [2, 2]
    assert OrderEvent.objects.filter(type=OrderEventType.LINKS_REVOKED).count() == 2
