"""The buyer after paying: order page keys behind "Show key", reports, lookup, magic link."""

import re

import pytest
from django.core import mail
from django.utils import timezone

from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from riskctl.models import RiskEvent
from shop.access import SESSION_ORDERS
from shop.models import KeyReport, KeyReportStatus, KeyReveal, LookupLink, OrderEventType
from shop.services import checkout_place_order
from shop.services.buyer import lookup_link_token
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(client, make_product, django_capture_on_commit_callbacks):
    """A paid order (keys on the order page) opened by ``client``'s browser."""

    def make(*, keys=3, quantity=1, query_password="", **product_fields):
        product = make_product(keys=keys, slug="gift", **product_fields)
        placed = checkout_place_order(product_slug=product.slug, quantity=quantity, email="Buyer@example.com",
                                      query_password=query_password)
        from payments.models import Payment
        Payment.objects.create(order=placed.order, provider="sandbox", reference=placed.order.order_no,
                               amount=placed.order.amount, currency=placed.order.currency)
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(NOTIFY_URL, sandbox_notice(placed.order)).content == b"success"
        placed.order.refresh_from_db()
        return placed.order

    return make


def _page(response) -> str:
    """The page without its per-response CSRF token."""
    return re.sub(r'value="[^"]+" name="csrfmiddlewaretoken"|name="csrfmiddlewaretoken" value="[^"]+"', "",
                  response.content.decode())


def _grant(client, order):
    session = client.session
    session[SESSION_ORDERS] = [order.order_no]
    session.save()


def test_order_page_hides_keys_and_reveal_logs_time_ip_and_browser(client, delivered):
    # given
    order = delivered()
    _grant(client, order)
    key = CardKey.objects.get(order_line__order=order)
    # when
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    revealed = client.post(f"/orders/{order.order_no}/keys/{key.pk}/reveal", HTTP_ACCEPT="application/json",
                           HTTP_USER_AGENT="TestBrowser/1.0", REMOTE_ADDR="203.0.113.7")
    # then
    assert "GIFT-KEY-00000" not in page and "Show key" in page
    assert revealed.status_code == 200
    assert revealed.json() == {"id": key.pk, "key": "GIFT-KEY-00000"}
    assert "no-store" in revealed["Cache-Control"]
    reveal = KeyReveal.objects.get()
    assert (reveal.order_id, reveal.card_key_id, reveal.ip, reveal.user_agent) == (
        order.pk, key.pk, "203.0.113.7", "TestBrowser/1.0")
    audit = KeyAuditEvent.objects.get(card_key=key, action=KeyAuditEvent.Action.REVEALED)
    assert (audit.actor, audit.ip) == ("buyer", "203.0.113.7")


def test_reveal_refused_to_another_browser_and_for_a_key_of_another_order(client, delivered, make_product):
    # given
    order = delivered()
    key = CardKey.objects.get(order_line__order=order)
    other = make_product(keys=1)
    other_key = CardKey.objects.get(product=other)
    # when
    stranger = client.post(f"/orders/{order.order_no}/keys/{key.pk}/reveal", HTTP_ACCEPT="application/json")
    _grant(client, order)
    foreign = client.post(f"/orders/{order.order_no}/keys/{other_key.pk}/reveal", HTTP_ACCEPT="application/json")
    # then
    assert stranger.status_code == 404 and b"GIFT-KEY" not in stranger.content
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "KEY_NOT_FOUND"
    assert KeyReveal.objects.count() == 0


def test_status_json_carries_the_timeline_but_never_a_key(client, delivered):
    # given
    order = delivered()
    _grant(client, order)
    # when
    body = client.get(f"/orders/{order.order_no}/status").json()
    # then
    assert body["status"] == order.status
    assert body["events"] == order.events.count()
    assert "Payment received" in body["timeline_html"] and "Show key" in body["keys_html"]
    assert "GIFT-KEY" not in body["timeline_html"] + body["keys_html"]


def test_report_replaces_the_key_within_the_products_allowance(client, delivered):
    # given
    order = delivered(auto_replacements_per_order=1)
    _grant(client, order)
    old = CardKey.objects.get(order_line__order=order)
    # when
    first = client.post(f"/orders/{order.order_no}/keys/{old.pk}/report", {"reason": "already used"}, follow=True)
    new = CardKey.objects.get(order_line__order=order, status=CardKeyStatus.DELIVERED)
    second = client.post(f"/orders/{order.order_no}/keys/{new.pk}/report", {"reason": "also used"}, follow=True)
    # then
    old.refresh_from_db()
    assert old.status == CardKeyStatus.VOID
    assert "The key was replaced" in first.content.decode()
    assert "Our staff will check the key" in second.content.decode()
    assert list(KeyReport.objects.order_by("id").values_list("card_key_id", "status", "replacement_key_id")) == [
        (old.pk, KeyReportStatus.REPLACED, new.pk), (new.pk, KeyReportStatus.OPEN, None),
    ]
    assert CardKey.objects.get(pk=new.pk).status == CardKeyStatus.DELIVERED  # the second one waits for staff
    assert list(order.events.filter(type__in=[OrderEventType.KEY_REPLACED, OrderEventType.KEY_REPORTED])
                .order_by("id").values_list("type", flat=True)) == [OrderEventType.KEY_REPLACED, OrderEventType.KEY_REPORTED]
    assert RiskEvent.objects.filter(kind="KEY_REPORTED", order_id=order.pk).count() == 1


def test_report_without_allowance_goes_to_staff_and_keeps_the_key(client, delivered):
    # given
    order = delivered()
    _grant(client, order)
    key = CardKey.objects.get(order_line__order=order)
    # when
    client.post(f"/orders/{order.order_no}/keys/{key.pk}/report", {"reason": "invalid"})
    again = client.post(f"/orders/{order.order_no}/keys/{key.pk}/report", {"reason": "invalid"}, follow=True)
    # then
    key.refresh_from_db()
    assert key.status == CardKeyStatus.DELIVERED
    assert list(KeyReport.objects.values_list("status", "reason")) == [(KeyReportStatus.OPEN, "invalid")]
    assert "already reported" in again.content.decode()


def test_lookup_with_query_password_opens_the_order(client, delivered):
    # given
    order = delivered(query_password="s3cret-pw")
    # when
    response = client.post("/lookup/", {"order_no": order.order_no, "email": "buyer@EXAMPLE.com",
                                        "query_password": "s3cret-pw"})
    # then
    assert (response.status_code, response["Location"]) == (302, f"/orders/{order.order_no}/")
    assert client.get(response["Location"]).status_code == 200
    assert order.query_password_hash.startswith("md5$") and "s3cret-pw" not in order.query_password_hash


@pytest.mark.parametrize("fields", [
    {"email": "buyer@example.com", "query_password": "wrong-pw"},
    {"email": "someone@example.com", "query_password": "s3cret-pw"},
    {"email": "buyer@example.com", "query_password": ""},
])
def test_lookup_failures_read_the_same_as_an_unknown_order(client, delivered, fields):
    # given
    order = delivered(query_password="s3cret-pw")
    # when
    wrong = client.post("/lookup/", {"order_no": order.order_no, **fields})
    unknown = client.post("/lookup/", {"order_no": "999999999", **fields})
    # then
    assert wrong.status_code == unknown.status_code == 400
    assert "We could not find an order with these details." in wrong.content.decode()
    assert _page(wrong).replace(order.order_no, "N") == _page(unknown).replace("999999999", "N")
    assert client.get(f"/orders/{order.order_no}/").status_code == 404


def test_lookup_is_rate_limited_with_retry_after(client, delivered):
    # given
    order = delivered(query_password="s3cret-pw")
    fields = {"order_no": order.order_no, "email": "buyer@example.com", "query_password": "guess-1"}
    # when
    codes = [client.post("/lookup/", fields).status_code for _ in range(11)]
    right = client.post("/lookup/", {**fields, "query_password": "s3cret-pw"})
    # then
    assert codes == [400] * 10 + [429]
    assert right.status_code == 429 and right["Retry-After"] == "60"


def test_magic_link_is_emailed_once_and_works_once(client, delivered, run_worker, django_capture_on_commit_callbacks):
    # given
    order = delivered()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post("/lookup/", {"order_no": order.order_no, "email": "buyer@example.com", "send_link": "1"})
        stranger = client.post("/lookup/", {"order_no": order.order_no, "email": "x@example.com", "send_link": "1"})
    run_worker()
    # then: the same answer either way, and one email to the buyer
    assert asked.status_code == stranger.status_code == 200
    assert asked.content.decode().count("we have emailed a sign-in link") == 1
    assert stranger.content.decode().count("we have emailed a sign-in link") == 1
    links = [m for m in mail.outbox if "sign in to order" in m.subject]
    assert [m.to for m in links] == [["Buyer@example.com"]]
    url = re.search(r"http://\S+/lookup/link/(\S+)", links[0].body)
    path = f"/lookup/link/{url.group(1)}"
    first = client.get(path)
    second = client.get(path)
    assert (first.status_code, first["Location"]) == (302, f"/orders/{order.order_no}/")
    assert second.status_code == 400 and "expired or was already used" in second.content.decode()
    assert LookupLink.objects.get().used_at is not None


def test_expired_or_forged_magic_link_opens_nothing(client, delivered):
    # given
    order = delivered()
    link = LookupLink.objects.create(order=order, expires_at=timezone.now() - timezone.timedelta(seconds=1))
    # when
    expired = client.get(f"/lookup/link/{lookup_link_token(link_id=link.pk)}")
    forged = client.get(f"/lookup/link/{link.pk}:forged")
    # then
    assert expired.status_code == forged.status_code == 400
    assert client.get(f"/orders/{order.order_no}/").status_code == 404
    assert LookupLink.objects.get().used_at is None


def test_show_all_keys_reveals_each_and_the_session_keeps_them_shown(client, delivered):
    # given: an order of two keys
    order = delivered(quantity=2)
    _grant(client, order)
    # when
    shown = client.post(f"/orders/{order.order_no}/keys/reveal", HTTP_ACCEPT="application/json",
                        REMOTE_ADDR="203.0.113.8")
    again = client.get(f"/orders/{order.order_no}/")
    # then: both keys, each reveal logged, and the reload shows them (logged again)
    assert sorted(k["key"] for k in shown.json()["keys"]) == ["GIFT-KEY-00000", "GIFT-KEY-00001"]
    assert "GIFT-KEY-00000" in again.content.decode() and "GIFT-KEY-00001" in again.content.decode()
    assert "no-store" in again["Cache-Control"]
    assert KeyReveal.objects.filter(order=order).count() == 4


def test_a_fresh_browser_does_not_inherit_revealed_keys(client, delivered):
    # given: keys revealed in one session
    from django.test import Client

    order = delivered(quantity=2)
    _grant(client, order)
    client.post(f"/orders/{order.order_no}/keys/reveal", HTTP_ACCEPT="application/json")
    other = Client()
    _grant(other, order)
    # when
    page = other.get(f"/orders/{order.order_no}/").content.decode()
    # then
    assert "GIFT-KEY-00000" not in page and "Show all keys" in page


def test_download_txt_holds_every_key_and_logs_each_reveal(client, delivered):
    # given
    order = delivered(quantity=2)
    _grant(client, order)
    # when
    response = client.post(f"/orders/{order.order_no}/keys.txt")
    # then
    body = response.content.decode()
    assert response["Content-Disposition"] == f'attachment; filename="{order.order_no}-keys.txt"'
    assert "no-store" in response["Cache-Control"]
    assert "GIFT-KEY-00000" in body and "GIFT-KEY-00001" in body
    assert KeyReveal.objects.filter(order=order).count() == 2


def test_keys_of_an_order_not_yours_are_not_revealed(client, delivered):
    # given: an order this browser never opened
    order = delivered(quantity=2)
    # when
    response = client.post(f"/orders/{order.order_no}/keys.txt")
    # then
    assert response.status_code == 404
    assert KeyReveal.objects.count() == 0


def test_a_refunded_order_explains_itself_in_the_buyers_language(client, delivered):
    # given: a paid order the shop refunded, with a staff note the buyer must not read
    from payments.models import Refund, RefundStatus
    from shop.models import Order, OrderStatus

    order = delivered()
    Refund.objects.create(payment=order.payments.get(), amount=order.amount, status=RefundStatus.SUCCEEDED,
                          actor="staff:owner", reason="internal note: chargeback risk", completed_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REFUNDED)
    _grant(client, order)
    # when
    en = client.get(f"/orders/{order.order_no}/").content.decode()
    zh = client.get(f"/orders/{order.order_no}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # then: what happened and where the money went, never the staff's note
    assert 'class="refund-explained"' in en
    assert "The shop refunded this order." in en and "internal note" not in en
    assert "店铺已为此订单退款" in zh and "原路退回" in zh
