"""Stripe: Checkout Sessions through the ``stripe`` SDK, and the webhook.

The webhook (``/payments/stripe/webhook``) is verified with
``stripe.Webhook.construct_event`` (signature and timestamp tolerance) before
anything else; each event is applied once, keyed on its event id:

- ``checkout.session.completed`` / ``checkout.session.async_payment_succeeded``
  with ``payment_status == "paid"`` → the order is paid;
- ``charge.refunded`` → the order is refunded (unless it already was);
- ``charge.dispute.created`` → an order event and an owner alert.

Other event types are acknowledged and not recorded.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import stripe
from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from payments.providers.base import (
    CallbackNotice,
    CallbackRejected,
    NoticeKind,
    PayAction,
    PayActionKind,
    PaymentProvider,
    ProbeResult,
    ProviderUnreachable,
    RefundFailed,
    RefundResult,
    text_field,
)

logger = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# Currencies Stripe counts in whole units (no cents).
ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
                "XOF", "XPF"}


def stripe_minor_units(amount: Decimal, currency: str) -> int:
    exponent = 0 if currency.upper() in ZERO_DECIMAL else 2
    return int((amount * (10 ** exponent)).to_integral_value())


def stripe_amount(minor, currency: str) -> Decimal:
    """Stripe's integer minor units as a 2-place Decimal."""
    if isinstance(minor, bool) or not isinstance(minor, int) or minor < 0 or minor >= 10**14:
        raise CallbackRejected("AMOUNT_INVALID", f"amount {minor!r} is not a whole number of minor units")
    exponent = 0 if currency.upper() in ZERO_DECIMAL else 2
    return (Decimal(minor) / (10 ** exponent)).quantize(Decimal("0.01"))


def stripe_client(config) -> stripe.StripeClient:
    options = {"max_network_retries": 2}
    if config.gateway:
        options["base_addresses"] = {"api": config.gateway}
    return stripe.StripeClient(config.secret("secret_key"), **options)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str:
    return value if isinstance(value, str) else ""


class StripeProvider(PaymentProvider):
    plugin = "stripe"
    required_secrets = ("secret_key", "webhook_secret")
    can_query = True

    def start(self, *, payment) -> PayAction:
        order = payment.order
        # No secret in the return URL: the buyer's own session opens the order page.
        back = settings.SITE_URL + reverse("shop:order", args=[order.order_no])
        try:
            session = stripe_client(self.config).v1.checkout.sessions.create(
                {
                    "mode": "payment",
                    "client_reference_id": payment.reference,
                    "customer_email": order.email,
                    "line_items": [{
                        "quantity": 1,
                        "price_data": {
                            "currency": payment.currency.lower(),
                            "unit_amount": stripe_minor_units(payment.amount, payment.currency),
                            "product_data": {"name": payment.subject[:200]},
                        },
                    }],
                    "metadata": {"reference": payment.reference},
                    # Charges, refunds and disputes carry it too.
                    "payment_intent_data": {"metadata": {"reference": payment.reference}},
                    "success_url": back,
                    "cancel_url": back,
                },
                {"idempotency_key": f"checkout-{payment.reference}"},
            )
        except stripe.StripeError as exc:
            logger.error("stripe checkout for %s failed: %s", payment.reference, type(exc).__name__)
            raise
        return PayAction(kind=PayActionKind.REDIRECT, url=session.url, checkout_id=session.id)

    def parse_callback(self, request) -> CallbackNotice | None:
        body = request.body
        try:
            stripe.Webhook.construct_event(
                body, request.META.get("HTTP_STRIPE_SIGNATURE", ""), self.config.secret("webhook_secret"),
                tolerance=settings.STRIPE_WEBHOOK_TOLERANCE,
            )
        except stripe.SignatureVerificationError:
            raise CallbackRejected("SIGNATURE_INVALID") from None
        except (ValueError, TypeError, AttributeError, KeyError):  # signed, but not an event (or not UTF-8 / JSON)
            raise CallbackRejected("PAYLOAD_INVALID") from None
        try:
            event = json.loads(body)
        except ValueError:
            raise CallbackRejected("PAYLOAD_INVALID") from None
        event = _dict(event)
        event_id = text_field(event, "id", max_length=80)
        kind = _str(event.get("type"))
        obj = _dict(_dict(event.get("data")).get("object"))
        currency = _str(obj.get("currency")).upper()
        if len(currency) != 3 or not currency.isalpha():
            currency = ""
        # The body exactly as signed is the evidence a dispute needs.
        raw = body.decode("utf-8", "replace").replace("\x00", "\\u0000")[:100_000]
        common = {"external_id": event_id, "payload": {"type": kind[:100], "body": raw},
                  "verification": "Stripe-Signature v1 valid"}
        if kind in PAID_EVENTS:
            reference = _str(obj.get("client_reference_id")) or _str(_dict(obj.get("metadata")).get("reference"))
            fields = {"reference": reference, "transaction": _str(obj.get("payment_intent")) or _str(obj.get("id"))}
            if not currency:
                raise CallbackRejected("PAYLOAD_INVALID", "currency missing")
            return CallbackNotice(
                reference=text_field(fields, "reference", max_length=40),
                transaction_id=text_field(fields, "transaction", max_length=80),
                amount=stripe_amount(obj.get("amount_total"), currency),
                currency=currency,
                succeeded=obj.get("payment_status") == "paid",
                **common,
            )
        if kind in ("charge.refunded", "charge.dispute.created"):
            fields = {
                "reference": _str(_dict(obj.get("metadata")).get("reference")),
                "transaction": _str(obj.get("payment_intent")),
            }
            refund = kind == "charge.refunded"
            if not currency:
                raise CallbackRejected("PAYLOAD_INVALID", "currency missing")
            return CallbackNotice(
                reference=text_field(fields, "reference", max_length=40, required=False),
                transaction_id=text_field(fields, "transaction", max_length=80),
                amount=stripe_amount(obj.get("amount_refunded") if refund else obj.get("amount"), currency),
                currency=currency,
                succeeded=obj.get("refunded") is True if refund else True,
                kind=NoticeKind.REFUND if refund else NoticeKind.DISPUTE,
                **{**common, "payload": {**common["payload"], "reason": _str(obj.get("reason"))[:100]}},
            )
        return None  # an event type we do not act on: acknowledged

    def reply_accepted(self) -> HttpResponse:
        return HttpResponse(json.dumps({"received": True}), content_type="application/json")

    def reply_rejected(self, code: str) -> HttpResponse:
        return HttpResponse(json.dumps({"error": code}), status=400, content_type="application/json")

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        if not payment.external_id:
            raise RefundFailed("PAYMENT_UNKNOWN", "the payment has no Stripe payment intent")
        try:
            refund = stripe_client(self.config).v1.refunds.create(
                {"payment_intent": payment.external_id, "amount": stripe_minor_units(amount, payment.currency),
                 "metadata": {"reference": payment.reference}},
                {"idempotency_key": f"refund-{payment.reference}"},
            )
        except stripe.StripeError as exc:
            raise RefundFailed(getattr(exc, "code", None) or "STRIPE_ERROR", type(exc).__name__) from None
        if refund.status in ("failed", "canceled"):
            raise RefundFailed("STRIPE_REFUND_" + refund.status.upper())
        return RefundResult(status=RefundResult.SUCCEEDED, external_id=refund.id)

    def query(self, *, payment) -> CallbackNotice | None:
        if not payment.checkout_id:
            return None
        try:
            session = stripe_client(self.config).v1.checkout.sessions.retrieve(payment.checkout_id)
        except stripe.InvalidRequestError:
            return None  # Stripe does not know this session
        except stripe.StripeError as exc:
            logger.warning("stripe query for %s failed: %s", payment.reference, type(exc).__name__)
            raise ProviderUnreachable("STRIPE_ERROR", type(exc).__name__) from None
        if session.payment_status != "paid" or session.client_reference_id != payment.reference:
            return None
        currency = str(session.currency).upper()
        return CallbackNotice(
            external_id=session.id, transaction_id=session.payment_intent or session.id, reference=payment.reference,
            amount=stripe_amount(session.amount_total, currency), currency=currency, succeeded=True,
            payload={"session": session.id, "payment_status": session.payment_status}, verification="Stripe API query",
        )

    def probe(self) -> ProbeResult:
        """Retrieve a Checkout Session that does not exist: a good key gets
        "No such checkout.session", a bad one an authentication error."""
        try:
            stripe_client(self.config).v1.checkout.sessions.retrieve("cs_kamidrop_probe_0000")
        except stripe.AuthenticationError:
            return ProbeResult(ok=False, code="AUTH_FAILED", detail="Stripe refused the secret key",
                               fix="Copy the secret key (sk_live_… or sk_test_…) again from the Stripe dashboard.")
        except stripe.InvalidRequestError as exc:
            return ProbeResult(ok=True, code="OK", detail=f"Stripe: {getattr(exc, 'user_message', '') or 'not found'}")
        except stripe.StripeError as exc:
            return ProbeResult(ok=False, code="UNREACHABLE", detail=f"Stripe: {type(exc).__name__}",
                               fix="Check that this server reaches api.stripe.com (firewall, proxy).")
        return ProbeResult(ok=False, code="BAD_ANSWER", detail="Stripe returned a session that should not exist")
