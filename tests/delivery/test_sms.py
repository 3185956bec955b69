"""SMS: a buyer who gives a phone number gets the key by text too. Backends:
console, Twilio (SDK; only its outbound HTTP is faked) and a signed webhook
(tested against a real HTTP server on loopback)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import django_rq
import pytest
import requests
from rq.registry import ScheduledJobRegistry

from delivery.models import Channel, Delivery, DeliveryStatus
from delivery.sms.webhook import webhook_sign
from shop.models import Order, OrderStatus
from tests.fakes.base import SERVE_POLL

pytestmark = pytest.mark.django_db

PHONE = "+8613800138000"
SECRET = "webhook-test-secret"


@pytest.fixture
def phone_order(pay, make_product, make_unpaid_order):
    def make():
        order = make_unpaid_order(product=make_product(keys=1, slug="sim"))
        Order.objects.filter(pk=order.pk).update(phone=PHONE)
        return pay(order)

    return make


def _sms(order) -> Delivery:
    return Delivery.objects.get(order=order, channel=Channel.SMS)


class _Gateway(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        status, answer = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def sms_gateway(settings):
    """A real HTTP server on loopback standing in for a local SMS gateway."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    server.received, server.answer = [], (200, b'{"id": "gw-1"}')
    thread = threading.Thread(target=server.serve_forever, kwargs=SERVE_POLL, daemon=True)
    thread.start()
    settings.SMS_BACKEND = "delivery.sms.webhook.WebhookSmsBackend"
    settings.SMS_WEBHOOK_URL = f"http://127.0.0.1:{server.server_address[1]}/send"
    settings.SMS_WEBHOOK_SECRET = SECRET
    yield server
    server.shutdown()
    server.server_close()


def test_no_phone_no_sms(paid_order):
    # then
    assert sorted(Delivery.objects.filter(order=paid_order).values_list("channel", flat=True)) == ["EMAIL", "INBOX"]


def test_webhook_sends_a_signed_text_with_the_key_and_the_order_link(phone_order, sms_gateway, smtp_server,
                                                                     run_worker, settings):
    # given
    order = phone_order()
    # when
    run_worker()
    # then
    sms = _sms(order)
    assert (sms.status, sms.attempts, sms.provider_message_id, sms.recipient) == (DeliveryStatus.SENT, 1, "gw-1", PHONE)
    ((headers, body),) = sms_gateway.received
    payload = json.loads(body)
    assert payload["to"] == PHONE
    assert payload["idempotency_key"] == headers["Idempotency-Key"] == f"kamidrop-delivery-{sms.pk}-0"
    assert payload["text"].startswith(f"Kamidrop order {order.order_no}: SIM-KEY-00000 ")
    assert f"{settings.SITE_URL}/orders/{order.order_no}/?s=" in payload["text"]
    assert headers["X-Kamidrop-Signature"] == webhook_sign(
        secret=SECRET, timestamp=headers["X-Kamidrop-Timestamp"], body=body
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED  # email and SMS both landed


def test_webhook_4xx_is_a_permanent_refusal(phone_order, sms_gateway, smtp_server, run_worker):
    # given
    sms_gateway.answer = (422, b'{"error": "invalid number", "echo": "SIM-KEY-00000"}')
    order = phone_order()
    # when
    run_worker()
    # then
    sms = _sms(order)
    assert (sms.status, sms.attempts) == (DeliveryStatus.FAILED, 1)
    assert sms.last_error == "PermanentDeliveryError: SMS gateway refused with HTTP 422"
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING


def test_webhook_5xx_is_retried(phone_order, sms_gateway, smtp_server, run_worker):
    # given
    sms_gateway.answer = (503, b"{}")
    order = phone_order()
    # when
    run_worker()
    # then
    sms = _sms(order)
    assert (sms.status, sms.attempts, sms.last_error) == (
        DeliveryStatus.PENDING, 1, "RuntimeError: SMS gateway answered HTTP 503",
    )
    assert ScheduledJobRegistry(queue=django_rq.get_queue("delivery")).get_job_ids() == [sms.job_id]


def test_console_backend_prints_the_text(phone_order, smtp_server, run_worker, capsys, settings):
    # given
    settings.SMS_BACKEND = "delivery.sms.console.ConsoleSmsBackend"
    order = phone_order()
    # when
    run_worker()
    # then
    sms = _sms(order)
    assert sms.status == DeliveryStatus.SENT and sms.provider_message_id.startswith("console-")
    printed = capsys.readouterr().out
    assert f"SMS to {PHONE} ({sms.provider_message_id}, kamidrop-delivery-{sms.pk}-0):" in printed
    assert f"Kamidrop order {order.order_no}: SIM-KEY-00000 " in printed


def _twilio_http(monkeypatch, status: int, answer: dict) -> list:
    """Fake only the HTTP call the Twilio SDK makes; record the requests."""
    sent = []

    def send(session, request, **kwargs):
        sent.append(request)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(answer).encode()
        response.headers["Content-Type"] = "application/json"
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    return sent


def test_twilio_sends_through_the_sdk(phone_order, smtp_server, run_worker, settings, monkeypatch):
    # given
    settings.SMS_BACKEND = "delivery.sms.twilio_backend.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM = "AC123", "tok", "+15005550006"
    sent = _twilio_http(monkeypatch, 201, {"sid": "SM0123456789", "status": "queued"})
    order = phone_order()
    # when
    run_worker()
    # then
    sms = _sms(order)
    assert (sms.status, sms.provider_message_id) == (DeliveryStatus.SENT, "SM0123456789")
    (request,) = sent
    assert request.url == "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
    form = parse_qs(request.body)
    assert (form["To"], form["From"]) == ([PHONE], ["+15005550006"])
    assert form["Body"][0].startswith(f"Kamidrop order {order.order_no}: SIM-KEY-00000 ")


def test_twilio_invalid_number_is_permanent(phone_order, smtp_server, run_worker, settings, monkeypatch):
    # given
    settings.SMS_BACKEND = "delivery.sms.twilio_backend.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM = "AC123", "tok", "+15005550006"
    _twilio_http(monkeypatch, 400, {"code": 21211, "message": "The 'To' number is not valid.", "status": 400})
    order = phone_order()
    # when
    run_worker()
    # then
    sms = _sms(order)
    assert (sms.status, sms.attempts, sms.last_error) == (
        DeliveryStatus.FAILED, 1, "PermanentDeliveryError: twilio 400 code 21211",
    )
