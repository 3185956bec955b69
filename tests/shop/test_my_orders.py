""""All my orders": a one-time sign-in link by email, the list of that
email's orders, signing out; the same answer for an email without orders."""

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from shop.models import Order, SignInLink
from shop.services.order_links import order_links_revoke
from shop.services.signin import signin_link_token

pytestmark = pytest.mark.django_db

SAME_ANSWER = "If there are orders for this email, we have sent a link to it."


@pytest.fixture
def orders(make_product, make_unpaid_order, pay):
    """Two orders of Ann (one paid), one of Bob."""
    product = make_product(keys=3, slug="card", name="Game card")
    ann_paid = pay(make_unpaid_order(product=product, email="Ann@example.com"))
    ann_unpaid = make_unpaid_order(product=product, email="ann@example.com", quantity=2)
    bob = make_unpaid_order(product=product, email="bob@example.com")
    return ann_paid, ann_unpaid, bob


def _ask(client, address, **extra):
    return client.post("/lookup/signin", {"email": address}, **extra)


def _emailed_link(run_worker) -> str:
    run_worker()
    [message] = [m for m in mail.outbox if "/lookup/signin/" in m.body]
    return re.search(r"https?://\S+(/lookup/signin/\S+)", message.body).group(1)


def test_the_answer_is_the_same_whether_or_not_the_email_has_orders(client, orders, run_worker,
                                                                     django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks(execute=True):
        known = _ask(client, "ANN@example.com")
        unknown = _ask(client, "nobody@example.com")
    run_worker()
    # then
    assert known.status_code == unknown.status_code == 200
    assert SAME_ANSWER in known.content.decode() and SAME_ANSWER in unknown.content.decode()
    page = re.sub(r'value="[^"]*"', "", known.content.decode())
    assert page == re.sub(r'value="[^"]*"', "", unknown.content.decode())
    assert list(SignInLink.objects.values_list("email", flat=True)) == ["ann@example.com"]
    assert [m.to for m in mail.outbox if "/lookup/signin/" in m.body] == [["ann@example.com"]]


def test_the_link_lists_only_that_emails_orders_and_opens_them(client, orders, run_worker,
                                                                django_capture_on_commit_callbacks):
    # given
    ann_paid, ann_unpaid, bob = orders
    with django_capture_on_commit_callbacks(execute=True):
        _ask(client, "ann@example.com")
    link = _emailed_link(run_worker)
    browser = Client()  # another device: the email was opened there
    # when
    opened = browser.get(link)
    page = browser.get("/orders/").content.decode()
    # then
    assert (opened.status_code, opened["Location"]) == (302, "/orders/")
    assert ann_paid.order_no in page and ann_unpaid.order_no in page and bob.order_no not in page
    assert "Game card × 2" in page and "Awaiting payment" in page and "ann@example.com" in page
    assert page.index(ann_unpaid.order_no) < page.index(ann_paid.order_no)  # newest first
    assert browser.get(f"/orders/{ann_paid.order_no}/").status_code == 200
    assert browser.get(f"/orders/{bob.order_no}/").status_code == 404


def test_dates_are_in_the_shops_time_zone(client, orders):
    # given: an order placed at 20:30 UTC, 04:30 the next day in Shanghai
    ann_paid = orders[0]
    Order.objects.filter(pk=ann_paid.pk).update(created_at=datetime(2026, 3, 1, 20, 30, tzinfo=UTC))
    session = client.session
    session["order_emails"] = ["ann@example.com"]
    session.save()
    # when
    page = client.get("/orders/").content.decode()
    # then
    assert "2026-03-02 04:30" in page


def test_the_link_works_once(client, orders, run_worker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _ask(client, "ann@example.com")
    link = _emailed_link(run_worker)
    assert Client().get(link).status_code == 302
    again = Client().get(link)
    assert again.status_code == 400 and "expired or was already used" in again.content.decode()


def test_an_expired_or_forged_link_signs_nobody_in(client, orders):
    # given
    link = SignInLink.objects.create(email="ann@example.com", expires_at=timezone.now() - timedelta(seconds=1))
    # when
    expired = client.get(f"/lookup/signin/{signin_link_token(link_id=link.pk)}")
    forged = client.get(f"/lookup/signin/{link.pk}:forged")
    # then
    assert expired.status_code == forged.status_code == 400
    assert orders[0].order_no not in client.get("/orders/").content.decode()
    assert client.get(f"/orders/{orders[0].order_no}/").status_code == 404


def test_asking_is_rate_limited_per_email_and_per_address(client, orders):
    # when: the same email from four networks; many emails from one network
    by_email = [_ask(Client(REMOTE_ADDR=f"198.51.100.{i}"), "ann@example.com").status_code for i in range(4)]
    by_ip = [_ask(client, f"x{i}@example.com").status_code for i in range(11)]
    # then
    assert by_email == [200, 200, 200, 429]
    assert by_ip == [200] * 10 + [429]
    assert SignInLink.objects.filter(email="ann@example.com").count() == 3


def test_signing_out_closes_the_orders_in_this_browser(client, orders):
    # given
    session = client.session
    session["order_emails"] = ["ann@example.com"]
    session.save()
    assert client.get(f"/orders/{orders[0].order_no}/").status_code == 200
    # when
    response = client.post("/orders/sign-out", follow=True)
    # then
    assert response.status_code == 200 and orders[0].order_no not in response.content.decode()
    assert client.get(f"/orders/{orders[0].order_no}/").status_code == 404


def test_revoking_order_links_leaves_the_email_sign_in_alone(client, orders):
    session = client.session
    session["order_emails"] = ["ann@example.com"]
    session.save()
    order_links_revoke(order_ids=[orders[0].pk], actor="staff:test")
    assert client.get(f"/orders/{orders[0].order_no}/").status_code == 200
    assert orders[0].order_no in client.get("/orders/").content.decode()


def test_the_list_without_a_sign_in_points_to_the_lookup_page(client, orders):
    page = client.get("/orders/")
    assert page.status_code == 200 and 'href="/lookup/#signin-title"' in page.content.decode()
    assert orders[0].order_no not in page.content.decode()


def test_the_lookup_page_offers_the_sign_in_form(client, db):
    page = client.get("/lookup/").content.decode()
    assert 'action="/lookup/signin"' in page and 'id="signin-email"' in page


def test_the_sign_in_token_never_reaches_the_request_log(client, orders, caplog):
    link = SignInLink.objects.create(email="ann@example.com", expires_at=timezone.now() + timedelta(minutes=5))
    token = signin_link_token(link_id=link.pk)
    with caplog.at_level(logging.INFO, logger="shop.request"):
        client.get(f"/lookup/signin/{token}")
    lines = [r.getMessage() for r in caplog.records if r.name == "shop.request"]
    assert len(lines) == 1 and lines[0].startswith("GET /lookup/signin/[redacted] 302")
    assert token not in caplog.text
