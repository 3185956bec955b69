"""Stripe: Checkout Sessions through the SDK, the webhook verified by the SDK,
refunds and reconciliation. Only Stripe's HTTP API is faked (a local server the
SDK talks to); webhooks are signed with the SDK's own signing code."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from django.utils import timezone

from delivery.models import AlertKind, Delivery, OwnerAlert
from inventory.models import CardKey
from payments.models import (
    Payment,
    PaymentEvent,
    PaymentEventKind,
    PaymentEventOutcome,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.services import checkout_start_payment, payment_notices_apply, payment_refund, payments_reconcile
from shop.models import Order, OrderEvent, OrderEventType, OrderStatus
from shop.ops.audit import audit_run
from tests.fakes.base import SERVE_POLL

pytestmark = pytest.mark.django_db

WEBHOOK_URL = "/payments/stripe/webhook"
WEBHOOK_SECRET = "whsec_test_secret"


class FakeStripeApi:
    """Stripe's HTTP API as far as the shop uses it, on loopback."""

    def __init__(self):
        self.requests: list[dict] = []
        self.refund_error: dict | None = None
        self.session_status = "paid"
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode())) if length else {}
                request = {"method": self.command, "path": self.path, "form": form,
                           "auth": self.headers.get("Authorization"), "idempotency": self.headers.get("Idempotency-Key")}
                api.requests.append(request)
                return request

            def do_POST(self):
                request = self._record()
                if self.path == "/v1/checkout/sessions":
                    self._reply(200, api.session(request["form"]["client_reference_id"], "unpaid"))
                elif self.path == "/v1/refunds":
                    if api.refund_error:
                        self._reply(400, {"error": api.refund_error})
                    else:
                        self._reply(200, {"id": "re_test_1", "object": "refund", "status": "succeeded",
                                          "amount": int(request["form"]["amount"]), "currency": "cny"})
                else:
                    self._reply(404, {"error": {"type": "invalid_request_error", "message": "no such path"}})

            def do_GET(self):
                self._record()
                reference = self.path.rsplit("_", 1)[-1]
                self._reply(200, api.session(reference, api.session_status))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=SERVE_POLL, daemon=True)

    @staticmethod
    def session(reference: str, payment_status: str) -> dict:
        return {"id": f"cs_test_{reference}", "object": "checkout.session", "client_reference_id": reference,
                "url": f"https://checkout.stripe.com/c/pay/cs_test_{reference}", "payment_status": payment_status,
                "amount_total": 1000, "currency": "cny", "payment_intent": f"pi_{reference}"}


@pytest.fixture(autouse=True)
def audited(request):
    """After every Stripe flow, the payment invariants of ``manage.py audit``
    hold (4: each callback applied once and matching its payment; 5: nothing
    paid is lost): Stripe names a payment by its intent, not its event id."""
    yield
    if "db" in request.fixturenames or request.node.get_closest_marker("django_db"):
        results = {r.number: r for r in audit_run()}
        assert (results[4].offending, results[5].offending) == ([], [])


@pytest.fixture
def stripe_api(settings):
    api = FakeStripeApi()
    api.thread.start()
    settings.STRIPE_SECRET_KEY = "sk_test_kamidrop"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = api.url
    settings.SITE_URL = "https://shop.example.com"
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def stripe_order(make_unpaid_order, make_product, stripe_api):
    def make(*, keys: int = 3, **fields) -> Order:
        order = make_unpaid_order(product=make_product(keys=keys), **fields)
        Payment.objects.filter(order=order).update(provider="stripe", checkout_id=f"cs_test_{order.order_no}")
        return order

    return make


def signed_post(client, event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return client.post(WEBHOOK_URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def session_event(order: Order, *, event_id: str = "evt_1", type: str = "checkout.session.completed",
                  payment_status: str = "paid", amount_total: int = 1000, currency: str = "cny") -> dict:
    return {
        "id": event_id, "object": "event", "type": type,
        "data": {"object": {
            "id": f"cs_test_{order.order_no}", "object": "checkout.session", "client_reference_id": order.order_no,
            "amount_total": amount_total, "currency": currency, "payment_status": payment_status,
            "payment_intent": f"pi_{order.order_no}", "metadata": {"reference": order.order_no},
        }},
    }


def charge_event(order: Order, *, event_id: str, type: str, **fields) -> dict:
    obj = {"id": f"ch_{order.order_no}", "object": "charge", "payment_intent": f"pi_{order.order_no}",
           "currency": "cny", "metadata": {"reference": order.order_no}, **fields}
    if type == "charge.dispute.created":
        obj = {"id": "dp_1", "object": "dispute", "payment_intent": f"pi_{order.order_no}", "currency": "cny",
               "charge": f"ch_{order.order_no}", **fields}
    return {"id": event_id, "object": "event", "type": type, "data": {"object": obj}}


def _state(order: Order) -> dict:
    order.refresh_from_db()
    return {
        "status": order.status,
        "payment": Payment.objects.get(order=order).status,
        "keys": list(CardKey.objects.filter(order_line__order=order).values_list("id", "status")),
        "events": OrderEvent.objects.filter(order=order).count(),
        "notices": PaymentEvent.objects.count(),
        "alerts": OwnerAlert.objects.count(),
    }


def test_checkout_opens_a_stripe_checkout_session(stripe_api, make_product):
    # given
    make_product(keys=2, slug="vip-30d", name="VIP 30d", price="10.00")
    # when
    started = checkout_start_payment(product_slug="vip-30d", quantity=1, email="buyer@example.com",
                                     provider_id="stripe")
    # then
    reference = started.order.order_no
    assert started.pay_url == f"https://checkout.stripe.com/c/pay/cs_test_{reference}"
    assert Payment.objects.get(order=started.order).checkout_id == f"cs_test_{reference}"
    (request,) = stripe_api.requests
    assert (request["method"], request["path"], request["auth"], request["idempotency"]) == (
        "POST", "/v1/checkout/sessions", "Bearer sk_test_kamidrop", f"checkout-{reference}"
    )
    form = request["form"]
    assert form["mode"] == "payment"
    assert form["client_reference_id"] == reference
    assert form["line_items[0][price_data][unit_amount]"] == "1000"
    assert form["line_items[0][price_data][currency]"] == "cny"
    assert form["line_items[0][price_data][product_data][name]"] == "VIP 30d"
    assert form["payment_intent_data[metadata][reference]"] == reference
    assert form["success_url"] == f"https://shop.example.com/orders/{reference}/"  # no secret for Stripe to keep


def test_completed_checkout_pays_the_order(client, stripe_order, django_capture_on_commit_callbacks):
    # given
    order = stripe_order()
    event = session_event(order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(client, event)
    # then
    assert (response.status_code, response.json()) == (200, {"received": True})
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    payment = Payment.objects.get(order=order)
    assert (payment.status, payment.external_id) == (PaymentStatus.SUCCEEDED, f"pi_{order.order_no}")
    notice = PaymentEvent.objects.get()
    assert (notice.external_id, notice.outcome, notice.amount, notice.currency, notice.verification) == (
        "evt_1", PaymentEventOutcome.ACCEPTED, Decimal("10.00"), "CNY", "Stripe-Signature v1 valid"
    )
    assert json.loads(notice.payload["body"]) == event


def test_a_redelivered_event_changes_nothing(client, stripe_order, django_capture_on_commit_callbacks):
    # given
    order = stripe_order()
    with django_capture_on_commit_callbacks(execute=True):
        signed_post(client, session_event(order))
    before = _state(order)
    # when
    response = signed_post(client, session_event(order))
    # then
    assert response.status_code == 200
    assert _state(order) == before


@pytest.mark.parametrize("how", ["wrong secret", "too old", "no header", "body changed"])
def test_unverifiable_webhooks_are_refused_before_the_database(client, stripe_order, how):
    # given
    order = stripe_order()
    before = _state(order)
    event = session_event(order)
    body = json.dumps(event)
    # when
    if how == "wrong secret":
        response = signed_post(client, event, secret="whsec_other")
    elif how == "too old":
        response = signed_post(client, event, timestamp=int(time.time()) - 301)
    elif how == "no header":
        response = client.post(WEBHOOK_URL, body, content_type="application/json")
    else:
        header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
        response = client.post(WEBHOOK_URL, body.replace("1000", "1"), content_type="application/json",
                               HTTP_STRIPE_SIGNATURE=header)
    # then
    assert (response.status_code, response.json()) == (400, {"error": "SIGNATURE_INVALID"})
    assert _state(order) == before


def test_an_async_payment_is_paid_when_it_succeeds(client, stripe_order, django_capture_on_commit_callbacks):
    # given: checkout completed with a payment method that settles later
    order = stripe_order()
    pending = signed_post(client, session_event(order, payment_status="unpaid"))
    order.refresh_from_db()
    assert (pending.status_code, order.status) == (200, OrderStatus.PENDING_PAYMENT)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(client, session_event(order, event_id="evt_2",
                                                     type="checkout.session.async_payment_succeeded"))
    # then
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert list(PaymentEvent.objects.order_by("id").values_list("external_id", "outcome")) == [
        ("evt_1", PaymentEventOutcome.IGNORED), ("evt_2", PaymentEventOutcome.ACCEPTED),
    ]


def test_an_underpaid_session_is_rejected(client, stripe_order):
    # given
    order = stripe_order()
    # when
    response = signed_post(client, session_event(order, amount_total=999))
    # then
    assert (response.status_code, response.json()) == (200, {"received": True})
    assert PaymentEvent.objects.get().reason_code == "AMOUNT_MISMATCH"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert OwnerAlert.objects.count() == 1


def test_other_event_types_are_acknowledged_and_not_recorded(client, stripe_order):
    # given
    order = stripe_order()
    before = _state(order)
    # when
    response = signed_post(client, {"id": "evt_9", "object": "event", "type": "customer.created",
                                    "data": {"object": {"id": "cus_1"}}})
    # then
    assert response.status_code == 200
    assert _state(order) == before


def _paid_stripe(order: Order, status: str) -> Order:
    Payment.objects.filter(order=order).update(status=PaymentStatus.SUCCEEDED, external_id=f"pi_{order.order_no}",
                                               succeeded_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status=status, paid_at=timezone.now())
    order.refresh_from_db()
    return order


def test_charge_refunded_at_stripe_refunds_the_order(client, stripe_order, django_capture_on_commit_callbacks):
    # given
    order = _paid_stripe(stripe_order(), OrderStatus.AWAITING_STOCK)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = signed_post(client, charge_event(order, event_id="evt_r", type="charge.refunded",
                                                    amount_refunded=1000, refunded=True))
    # then
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    refund = Refund.objects.get()
    assert (refund.status, refund.amount, refund.actor) == (RefundStatus.SUCCEEDED, Decimal("10.00"),
                                                            "provider:stripe")
    notice = PaymentEvent.objects.get()
    assert (notice.kind, notice.outcome) == (PaymentEventKind.REFUND, PaymentEventOutcome.REFUNDED)
    assert len(callbacks) == 1  # the buyer's email


def test_charge_refunded_after_our_own_refund_changes_nothing(client, stripe_order, stripe_api):
    # given: refunded from the shop; Stripe reports it back
    order = _paid_stripe(stripe_order(), OrderStatus.AWAITING_STOCK)
    refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    assert refund.status == RefundStatus.SUCCEEDED
    before = _state(order)
    # when
    response = signed_post(client, charge_event(order, event_id="evt_r", type="charge.refunded",
                                                amount_refunded=1000, refunded=True))
    # then
    assert response.status_code == 200
    assert _state(order) == {**before, "notices": before["notices"] + 1}
    assert PaymentEvent.objects.get().reason_code == "ALREADY_REFUNDED"


def test_charge_refunded_after_delivery_is_flagged_for_staff(client, stripe_order):
    # given
    order = _paid_stripe(stripe_order(), OrderStatus.DELIVERED)
    # when
    response = signed_post(client, charge_event(order, event_id="evt_r", type="charge.refunded",
                                                amount_refunded=1000, refunded=True))
    # then
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert order.events.get(type=OrderEventType.PAYMENT_ODD).data["reason"] == "REFUNDED_AFTER_DELIVERY"
    assert OwnerAlert.objects.get().kind == AlertKind.PAYMENT_ODD


def test_dispute_opened_writes_an_order_event_and_alerts_the_owner(client, stripe_order):
    # given
    order = _paid_stripe(stripe_order(), OrderStatus.DELIVERED)
    # when
    response = signed_post(client, charge_event(order, event_id="evt_d", type="charge.dispute.created",
                                                amount=1000, reason="fraudulent"))
    repeat = signed_post(client, charge_event(order, event_id="evt_d", type="charge.dispute.created",
                                              amount=1000, reason="fraudulent"))
    # then
    assert (response.status_code, repeat.status_code) == (200, 200)
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert order.events.get(type=OrderEventType.DISPUTE_OPENED).data == {
        "external_id": "evt_d", "amount": "10.00", "reason": "fraudulent",
    }
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.subject) == (AlertKind.DISPUTE, f"Payment for order {order.order_no} disputed (fraudulent)")
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.DISPUTED


def test_refund_goes_through_the_stripe_api(stripe_order, stripe_api):
    # given
    order = _paid_stripe(stripe_order(), OrderStatus.AWAITING_STOCK)
    # when
    refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    # then
    assert (refund.status, refund.external_id) == (RefundStatus.SUCCEEDED, "re_test_1")
    (request,) = stripe_api.requests
    assert (request["path"], request["form"]["payment_intent"], request["form"]["amount"], request["idempotency"]) == (
        "/v1/refunds", f"pi_{order.order_no}", "1000", f"refund-{order.order_no}"
    )


def test_a_refund_stripe_refuses_is_failed_and_alerted(stripe_order, stripe_api):
    # given
    stripe_api.refund_error = {"type": "invalid_request_error", "code": "charge_disputed", "message": "disputed"}
    order = _paid_stripe(stripe_order(), OrderStatus.AWAITING_STOCK)
    # when
    refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    # then
    assert (refund.status, refund.error) == (RefundStatus.FAILED, "charge_disputed: InvalidRequestError")
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED
    assert OwnerAlert.objects.get().subject == f"Refund of order {order.order_no} failed (charge_disputed)"


def test_reconcile_completes_a_paid_session_whose_webhook_never_came(stripe_order, stripe_api,
                                                                     django_capture_on_commit_callbacks):
    # given
    order = stripe_order()
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timezone.timedelta(minutes=10))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = payments_reconcile(provider_id="stripe")
    # then
    assert (result.checked, result.completed, result.unanswered) == (1, [order.order_no], 0)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert stripe_api.requests[0]["path"] == f"/v1/checkout/sessions/cs_test_{order.order_no}"
    assert Payment.objects.get(order=order).external_id == f"pi_{order.order_no}"


def test_reconcile_leaves_an_unpaid_session_alone(stripe_order, stripe_api):
    # given
    stripe_api.session_status = "unpaid"
    order = stripe_order()
    Payment.objects.filter(order=order).update(created_at=timezone.now() - timezone.timedelta(minutes=10))
    before = _state(order)
    # when
    result = payments_reconcile(provider_id="stripe")
    # then
    assert (result.checked, result.completed, result.unanswered) == (1, [], 1)
    assert _state(order) == before


# --- out of order: a refund or dispute reported before its payment ------------

def test_a_refund_reported_before_its_payment_keeps_the_key_and_closes_the_order(
        client, stripe_order, django_capture_on_commit_callbacks):
    # given: Stripe delivers charge.refunded before checkout.session.completed
    order = stripe_order()
    refunded = signed_post(client, charge_event(order, event_id="evt_r", type="charge.refunded",
                                                amount_refunded=1000, refunded=True))
    assert refunded.status_code == 200
    assert PaymentEvent.objects.get(external_id="evt_r").reason_code == "REFUNDED_BEFORE_PAYMENT"
    # when: the payment arrives
    with django_capture_on_commit_callbacks(execute=True):
        paid = signed_post(client, session_event(order, event_id="evt_p"))
    # then: recorded, refunded, nothing delivered, the owner told
    assert paid.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert not CardKey.objects.filter(order_line__order=order).exists()
    assert not Delivery.objects.filter(order=order).exists()
    assert PaymentEvent.objects.get(external_id="evt_p").reason_code == "REFUNDED_BEFORE_PAYMENT"
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    assert "before payment" in OwnerAlert.objects.get(dedupe_key="before-payment:stripe:evt_p").body


def test_a_dispute_reported_before_its_payment_holds_the_order_for_staff(
        client, stripe_order, django_capture_on_commit_callbacks):
    # given
    order = stripe_order()
    signed_post(client, charge_event(order, event_id="evt_d", type="charge.dispute.created", amount=1000,
                                     reason="fraudulent"))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        signed_post(client, session_event(order, event_id="evt_p"))
    # then: paid, keys set aside but not shown, a review open with the reason
    order.refresh_from_db()
    assert order.status == OrderStatus.IN_REVIEW
    assert not order.keys_visible
    assert not Delivery.objects.filter(order=order).exists()
    assert order.events.get(type=OrderEventType.REVIEW_OPENED).data["reason"] == "DISPUTED_BEFORE_PAYMENT"


def test_a_refund_naming_only_the_payment_intent_is_looked_at_again_when_its_payment_appears(
        client, stripe_order, django_capture_on_commit_callbacks):
    # given: a refund without our reference, before the payment: no payment has that intent yet
    order = stripe_order()
    event = charge_event(order, event_id="evt_r", type="charge.refunded", amount_refunded=1000, refunded=True)
    event["data"]["object"]["metadata"] = {}
    signed_post(client, event)
    assert PaymentEvent.objects.get(external_id="evt_r").reason_code == "ORDER_UNKNOWN"
    # when
    with django_capture_on_commit_callbacks(execute=True):
        signed_post(client, session_event(order, event_id="evt_p"))
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert not CardKey.objects.filter(order_line__order=order).exists()


def test_the_batch_applier_does_not_hand_out_a_key_for_a_payment_refunded_in_the_same_batch(
        client, stripe_order, queued, django_capture_on_commit_callbacks):
    # given: both notices stored, the refund first, applied together
    order = stripe_order()
    signed_post(client, charge_event(order, event_id="evt_r", type="charge.refunded", amount_refunded=1000,
                                     refunded=True))
    signed_post(client, session_event(order, event_id="evt_p"))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        assert payment_notices_apply() == 2
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert not CardKey.objects.filter(order_line__order=order).exists()


def test_a_late_payment_for_an_expired_order_is_accepted_and_delivered(client, stripe_order,
                                                                       django_capture_on_commit_callbacks):
    # given
    order = stripe_order()
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(client, session_event(order))
    # then
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert CardKey.objects.filter(order_line__order=order).count() == 1
