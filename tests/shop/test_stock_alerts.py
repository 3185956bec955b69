"""Back in stock: a buyer leaves an email on a sold-out product and is
emailed once, in their language, when keys are imported."""

import email
import re
from email import policy

import django_rq
import pytest
from django.test import Client

from inventory.services import key_entries
from shop.models import StockAlertRequest
from shop.services import product_stock_import
from shop.services.stock_alerts import stock_alert_unsubscribe_token, stock_alerts_notify

pytestmark = pytest.mark.django_db


@pytest.fixture
def sold_out(make_product):
    return make_product(keys=0, slug="card", name="Game card 50", name_zh="游戏点卡 50")


def _ask(client, product, address, **headers):
    return client.post(f"/p/{product.slug}/notify-me", {"email": address}, **headers)


def _import(product, n, django_capture_on_commit_callbacks, start=0):
    with django_capture_on_commit_callbacks(execute=True):
        return product_stock_import(product=product, source="test",
                                    entries=key_entries(f"NEW-{i:04d}" for i in range(start, start + n)))


def _received(smtp_server) -> list:
    return [email.message_from_bytes(m.content, policy=policy.default) for m in smtp_server.messages]


def test_a_sold_out_product_offers_the_form_and_one_in_stock_does_not(client, sold_out, make_product):
    in_stock = make_product(keys=1, slug="has-keys")
    assert f'action="/p/{sold_out.slug}/notify-me"' in client.get(f"/p/{sold_out.slug}/").content.decode()
    assert "notify-me" not in client.get(f"/p/{in_stock.slug}/").content.decode()


def test_asking_twice_keeps_one_request_in_the_buyers_language(client, sold_out):
    # when
    first = _ask(client, sold_out, "Buyer@Example.com", HTTP_ACCEPT_LANGUAGE="zh-hans")
    again = _ask(client, sold_out, "buyer@example.com ", HTTP_ACCEPT_LANGUAGE="zh-hans")
    # then: both answered honestly; one row, lower-case, in Chinese
    assert first.status_code == again.status_code == 200
    assert 'id="stock-alert-done"' in first.content.decode() and "buyer@example.com" in again.content.decode()
    assert list(StockAlertRequest.objects.values_list("email", "language", "notified_at")) == [
        ("buyer@example.com", "zh-hans", None)]


def test_a_wrong_email_is_refused_in_words_and_nothing_is_stored(client, sold_out):
    response = _ask(client, sold_out, "not-an-email")
    assert response.status_code == 400 and "Enter a valid email address." in response.content.decode()
    assert not StockAlertRequest.objects.exists()


def test_requests_are_rate_limited_per_address(client, sold_out):
    # when
    codes = [_ask(client, sold_out, f"b{i}@example.com").status_code for i in range(11)]
    limited = _ask(client, sold_out, "late@example.com")
    other_network = _ask(Client(REMOTE_ADDR="198.51.100.7"), sold_out, "other@example.com")
    # then
    assert codes == [200] * 10 + [429]
    assert limited.status_code == 429 and limited["Retry-After"] == "3600"
    assert "Too many requests" in limited.content.decode()
    assert other_network.status_code == 200
    assert StockAlertRequest.objects.count() == 11


def test_an_import_emails_each_waiting_buyer_once_in_their_language(client, sold_out, smtp_server, run_worker,
                                                                     django_capture_on_commit_callbacks):
    # given: two buyers wait, one asked in Chinese; one more cancelled
    _ask(client, sold_out, "zh@example.com", HTTP_ACCEPT_LANGUAGE="zh-hans")
    _ask(client, sold_out, "en@example.com", HTTP_ACCEPT_LANGUAGE="en")
    _ask(client, sold_out, "gone@example.com")
    Client().post(f"/alerts/unsubscribe/{stock_alert_unsubscribe_token(alert_id=StockAlertRequest.objects.get(email='gone@example.com').pk)}")
    # when: keys arrive (the admin's and import_keys' path), twice
    _import(sold_out, 3, django_capture_on_commit_callbacks)
    run_worker()
    _import(sold_out, 2, django_capture_on_commit_callbacks, start=3)
    run_worker()
    # then: one email each, in their language, with the product's link and a way out
    messages = {m["To"]: m for m in _received(smtp_server)}
    assert sorted(messages) == ["en@example.com", "zh@example.com"] and len(smtp_server.messages) == 2
    zh = messages["zh@example.com"].get_body(("plain",)).get_content()
    en = messages["en@example.com"].get_body(("plain",)).get_content()
    assert "游戏点卡 50" in zh and "游戏点卡" not in en and "Game card 50" in en
    assert re.search(r"https?://\S+/p/card/", en)
    unsubscribe = re.search(r"https?://\S+/alerts/unsubscribe/\S+", en).group(0)
    assert messages["en@example.com"]["List-Unsubscribe"].strip() == f"<{unsubscribe}>"
    assert messages["en@example.com"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    waiting = StockAlertRequest.objects.filter(notified_at__isnull=True, unsubscribed_at__isnull=True)
    assert not waiting.exists()


def test_an_import_with_nobody_waiting_enqueues_nothing(make_product, django_capture_on_commit_callbacks):
    product = make_product(keys=0, slug="quiet")
    _import(product, 2, django_capture_on_commit_callbacks)
    assert django_rq.get_queue("delivery").count == 0


def test_a_failed_send_leaves_the_buyers_waiting_and_the_job_retries(client, sold_out, smtp_server,
                                                                      django_capture_on_commit_callbacks):
    # given
    _ask(client, sold_out, "a@example.com")
    _ask(client, sold_out, "b@example.com")
    smtp_server.refuse = True  # 451: try again later
    # when: the import enqueues the job, with RQ's retries
    _import(sold_out, 1, django_capture_on_commit_callbacks)
    [job] = django_rq.get_queue("delivery").jobs
    with pytest.raises(Exception):
        stock_alerts_notify(product_id=sold_out.pk)
    # then: nobody counts as told; the next attempt tells them
    assert job.retries_left and job.retries_left > 3
    assert StockAlertRequest.objects.filter(notified_at__isnull=True).count() == 2
    smtp_server.refuse = False
    assert stock_alerts_notify(product_id=sold_out.pk) == 2
    assert stock_alerts_notify(product_id=sold_out.pk) == 0
    assert sorted(m["To"] for m in _received(smtp_server)) == ["a@example.com", "b@example.com"]


def test_no_email_while_the_product_still_cannot_be_bought(client, sold_out, smtp_server):
    _ask(client, sold_out, "a@example.com")
    assert stock_alerts_notify(product_id=sold_out.pk) == 0  # no key came
    assert smtp_server.messages == [] and StockAlertRequest.objects.get().notified_at is None


def test_unsubscribe_page_then_one_click(client, sold_out):
    # given
    _ask(client, sold_out, "a@example.com")
    alert = StockAlertRequest.objects.get()
    url = f"/alerts/unsubscribe/{stock_alert_unsubscribe_token(alert_id=alert.pk)}"
    # when: opening the link changes nothing (mail scanners open links); the button does
    page = Client().get(url)
    alert.refresh_from_db()
    assert page.status_code == 200 and "Cancel this email" in page.content.decode() and alert.unsubscribed_at is None
    done = Client().post(url)
    # then
    alert.refresh_from_db()
    assert done.status_code == 200 and alert.unsubscribed_at is not None and 'id="unsubscribed"' in done.content.decode()
    assert Client().get("/alerts/unsubscribe/forged").status_code == 404
    # asking again after cancelling is a new request
    assert _ask(client, sold_out, "a@example.com").status_code == 200 and StockAlertRequest.objects.count() == 2


def test_staff_see_the_requests_under_stock(admin_client, client, sold_out):
    _ask(client, sold_out, "a@example.com")
    page = admin_client.get("/admin/shop/stockalertrequest/")
    assert page.status_code == 200 and "a@example.com" in page.content.decode()
    assert "Back-in-stock requests" in admin_client.get("/admin/").content.decode()
