"""A fake Stripe: the Checkout Sessions API as far as the shop uses it, and
a hosted checkout page whose Pay button sends the signed
``checkout.session.completed`` webhook (Stripe-Signature ``t=…,v1=…``,
HMAC-SHA256 written from Stripe's document, not the SDK) and returns the buyer."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time

from tests.fakes.base import FakeGateway, Reply, Request


class FakeStripe(FakeGateway):
    def __init__(self, *, secret_key: str = "sk_test_fake", webhook_secret: str = "whsec_fake"):
        self.secret_key, self.webhook_secret = secret_key, webhook_secret
        self.sessions: dict[str, dict] = {}
        self.webhook_url = ""
        self.notify_replies: list[tuple[int, str]] = []
        super().__init__()

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/v1/") and request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return Reply(401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})
        if request.path == "/v1/checkout/sessions" and request.method == "POST":
            form = request.form
            session_id = f"cs_test_{len(self.sessions) + 1:04d}"
            self.sessions[session_id] = {
                "id": session_id, "object": "checkout.session", "client_reference_id": form["client_reference_id"],
                "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                "currency": form["line_items[0][price_data][currency]"], "payment_status": "unpaid",
                "payment_intent": f"pi_{session_id}", "metadata": {"reference": form["metadata[reference]"]},
                "url": f"{self.url}/pay/{session_id}", "success_url": form["success_url"],
            }
            return Reply(200, self.sessions[session_id])
        if request.path.startswith("/v1/checkout/sessions/"):
            session = self.sessions.get(request.path.rsplit("/", 1)[-1])
            if session is None:
                return Reply(404, {"error": {"type": "invalid_request_error", "message": "No such checkout.session"}})
            return Reply(200, session)
        if request.path.startswith("/pay/"):
            session = self.sessions[request.path.rsplit("/", 1)[-1]]
            if request.method == "GET":
                return Reply(200, f"<html><body><h1>Stripe test checkout</h1><p id='amount'>{session['amount_total']}"
                                  f"</p><form method='post'><button id='pay'>Pay</button></form></body></html>",
                             content_type="text/html; charset=utf-8")
            session["payment_status"] = "paid"
            self.notify_replies.append(self.send_webhook(session))
            return Reply(302, b"", headers={"Location": html.unescape(session["success_url"])})
        return Reply(404, {"error": {"type": "invalid_request_error", "message": "no such path"}})

    def send_webhook(self, session: dict) -> tuple[int, str]:
        event = {"id": f"evt_{session['id']}", "object": "event", "type": "checkout.session.completed",
                 "data": {"object": {k: v for k, v in session.items() if k != "success_url"}}}
        body = json.dumps(event)
        stamp = int(time.time())
        v1 = hmac.new(self.webhook_secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
        return self.post(self.webhook_url, body=body.encode(),
                         headers={"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},v1={v1}"})
