"""The sandbox gateway: a fake payment provider that behaves like a real one.

Its pay page (labelled SANDBOX) exists only when ``DEBUG`` or
``SANDBOX_ENABLED``. Paying there makes the gateway send a server-to-server
notify, signed with HMAC-SHA256 under ``SANDBOX_SECRET``, from the worker to
``/payments/sandbox/notify`` and re-send it with back-off until the shop
answers ``success``: never through the buyer's browser.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from payments.providers.base import CallbackNotice, CallbackRejected, PaymentProvider, money_parse

SIGNED_FIELDS = ("trade_no", "out_trade_no", "amount", "currency", "trade_status")


def sandbox_sign(params: dict, secret: str) -> str:
    """HMAC-SHA256 (hex) over ``k=v`` pairs sorted by name, joined with ``&``,
    leaving out ``sign`` and empty values."""
    canonical = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] not in ("", None))
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def sandbox_trade_no(reference: str) -> str:
    """The gateway's transaction id for a payment: stable, like a real gateway's
    one trade per merchant order, so paying twice sends the same trade."""
    digest = hmac.new(settings.SANDBOX_SECRET.encode(), reference.encode(), hashlib.sha256).hexdigest()
    return f"SBX{digest[:20].upper()}"


class SandboxProvider(PaymentProvider):
    id = "sandbox"

    def enabled(self) -> bool:
        return bool(settings.SANDBOX_ENABLED and settings.SANDBOX_SECRET)

    def start(self, *, payment) -> str:
        return reverse("payments:sandbox-pay", args=[payment.reference])

    def parse_callback(self, request) -> CallbackNotice:
        params = {k: request.POST.get(k, "") for k in (*SIGNED_FIELDS, "sign")}
        expected = sandbox_sign({k: params[k] for k in SIGNED_FIELDS}, settings.SANDBOX_SECRET)
        if not hmac.compare_digest(expected.encode(), params["sign"].encode()):
            raise CallbackRejected("SIGNATURE_INVALID")
        if not params["trade_no"] or not params["out_trade_no"]:
            raise CallbackRejected("PAYLOAD_INVALID", "trade_no and out_trade_no are required")
        return CallbackNotice(
            external_id=params["trade_no"],
            reference=params["out_trade_no"],
            amount=money_parse(params["amount"]),
            currency=params["currency"].upper(),
            succeeded=params["trade_status"] == "SUCCESS",
            payload={k: params[k] for k in SIGNED_FIELDS},
        )

    def reply_accepted(self) -> HttpResponse:
        return HttpResponse("success", content_type="text/plain")

    def reply_rejected(self, code: str) -> HttpResponse:
        return HttpResponse(f"fail {code}", status=400, content_type="text/plain")
