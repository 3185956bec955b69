"""Payment notices in admin as dispute evidence; reconciliation against EPay's api.php."""

import json
import threading
import urllib.parse
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from shop.models import OrderStatus
from tests.fakes.base import SERVE_POLL
from tests.payments.conftest import EPAY_KEY, EPAY_NOTIFY_URL, epay_notice

pytestmark = pytest.mark.django_db


def test_payment_event_admin_shows_the_raw_payload_verdict_and_outcome(admin_client, make_product, make_epay_order,
                                                                       django_capture_on_commit_callbacks):
    # given
    order = make_epay_order(product=make_product(keys=2))
    notice = epay_notice(order, name="<b>VIP</b>")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(EPAY_NOTIFY_URL, notice)
    event = PaymentEvent.objects.get()
    # when
    listing = admin_client.get(reverse("admin:payments_paymentevent_changelist")).content.decode()
    page = admin_client.get(reverse("admin:payments_paymentevent_change", args=[event.pk])).content.decode()
    # then
    assert "MD5 sign valid (POST)" in listing and "Accepted: order paid" in listing
    assert "MD5 sign valid (POST)" in page
    assert "Accepted: order paid" in page
    assert f"&quot;sign&quot;: &quot;{notice['sign']}&quot;" in page
    assert "&quot;name&quot;: &quot;&lt;b&gt;VIP&lt;/b&gt;&quot;" in page  # escaped, never rendered
    assert "<b>VIP</b>" not in page


class FakeEpayApi:
    """The gateway's api.php?act=order on loopback."""

    def __init__(self, trades: dict):
        self.queries = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                api.queries.append((url.path, query))
                trade = trades.get(query.get("out_trade_no"))
                ok = url.path == "/api.php" and query.get("act") == "order" and query.get("key") == EPAY_KEY
                body = json.dumps(trade if (ok and trade) else {"code": -1, "msg": "no such order"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs=SERVE_POLL, daemon=True).start()


@pytest.fixture
def epay_api(epay):
    trades = {}
    api = FakeEpayApi(trades)
    epay.EPAY_GATEWAY = f"{api.url}/submit.php"
    api.trades = trades
    yield api
    api.server.shutdown()
    api.server.server_close()


def _aged(order):
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=30))
    return order


def test_reconcile_completes_an_epay_payment_whose_notify_was_lost(epay_api, make_product, make_epay_order,
                                                                   django_capture_on_commit_callbacks, capsys):
    # given: paid at the gateway, never notified; and one order nobody paid
    paid = _aged(make_epay_order(product=make_product(keys=2)))
    unpaid = _aged(make_epay_order(product=make_product(keys=2)))
    epay_api.trades[paid.order_no] = {"code": 1, "msg": "ok", "trade_no": "2024010199990001", "out_trade_no":
                                      paid.order_no, "type": "alipay", "pid": 1001, "money": "10.00", "status": 1}
    # when
    with django_capture_on_commit_callbacks(execute=True):
        call_command("payments_reconcile", "--provider", "epay")
    # then
    paid.refresh_from_db()
    unpaid.refresh_from_db()
    assert (paid.status, unpaid.status) == (OrderStatus.FULFILLING, OrderStatus.PENDING_PAYMENT)
    assert capsys.readouterr().out.splitlines() == [
        "checked 2, completed 1, refused 0, not paid or no answer 1", f"completed {paid.order_no}",
    ]
    event = PaymentEvent.objects.get()
    assert (event.external_id, event.outcome, event.verification) == (
        "2024010199990001", PaymentEventOutcome.ACCEPTED, "api.php?act=order query"
    )
    assert sorted(q[1]["out_trade_no"] for q in epay_api.queries) == sorted([paid.order_no, unpaid.order_no])
    assert {q[1]["pid"] for q in epay_api.queries} == {"1001"}


def test_the_late_notify_after_reconciliation_is_a_duplicate(client, epay_api, make_product, make_epay_order,
                                                             django_capture_on_commit_callbacks):
    # given: reconciled first
    order = _aged(make_epay_order(product=make_product(keys=3)))
    epay_api.trades[order.order_no] = {"code": 1, "trade_no": "2024010112000012345", "out_trade_no": order.order_no,
                                       "pid": "1001", "money": "10.00", "status": 1}
    with django_capture_on_commit_callbacks(execute=True):
        call_command("payments_reconcile")
    # when: the lost notify turns up after all
    response = client.post(EPAY_NOTIFY_URL, epay_notice(order))
    # then
    assert response.content == b"success"
    assert PaymentEvent.objects.count() == 1
    assert order.lines.get().card_keys.count() == 1


def test_reconcile_refuses_a_trade_paid_short(epay_api, make_product, make_epay_order):
    # given
    order = _aged(make_epay_order(product=make_product(keys=2)))
    epay_api.trades[order.order_no] = {"code": 1, "trade_no": "T1", "out_trade_no": order.order_no, "pid": "1001",
                                       "money": "9.00", "status": 1}
    # when
    call_command("payments_reconcile")
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert Payment.objects.get(order=order).status == PaymentStatus.CREATED
    assert PaymentEvent.objects.get().reason_code == "AMOUNT_MISMATCH"


def test_reconcile_skips_payments_too_young_to_chase(epay_api, make_product, make_epay_order):
    # given: opened a moment ago
    order = make_epay_order(product=make_product(keys=2))
    epay_api.trades[order.order_no] = {"code": 1, "trade_no": "T1", "out_trade_no": order.order_no, "pid": "1001",
                                       "money": "10.00", "status": 1}
    # when
    call_command("payments_reconcile")
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert epay_api.queries == []
