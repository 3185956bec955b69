"""The sandbox gateway: a fake payment provider that behaves like a real one.

Its pay page (labelled SANDBOX) exists only when ``DEBUG`` or
``SANDBOX_ENABLED``. Paying there makes the gateway record the trade (in
Redis: the gateway's own books, which reconciliation can query) and send a
server-to-server notify, signed with HMAC-SHA256 under ``SANDBOX_SECRET``,
from the worker to ``/payments/sandbox/notify``, re-sending it with back-off
until the shop answers ``success``: never through the buyer's browser.

For demos and tests the gateway can misbehave the way real ones do
(``SANDBOX_NOTIFY_MODE`` or the pay page's choice): send duplicates, send a
stale status report after the success, report a wrong amount, or never
notify at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import django_rq
from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from payments.providers.base import (
    CallbackNotice,
    CallbackRejected,
    PayAction,
    PayActionKind,
    PaymentProvider,
    RefundResult,
    money_parse,
    payload_clean,
    text_field,
)

SIGNED_FIELDS = ("trade_no", "out_trade_no", "amount", "currency", "trade_status")
SUCCESS_STATUS = "SUCCESS"
STALE_STATUS = "WAIT_PAY"  # what an out-of-order gateway reports after the success


class NotifyMode:
    """How the sandbox gateway notifies the shop after the buyer pays."""

    NORMAL = "normal"  # one success notice (re-sent until acknowledged)
    DUPLICATE = "duplicate"  # the same success notice twice
    OUT_OF_ORDER = "out_of_order"  # the success, then a stale "waiting for payment" report
    WRONG_AMOUNT = "wrong_amount"  # the buyer paid 0.01 less than asked
    OVERPAY = "overpay"  # the buyer paid 1.00 more than asked
    LOST = "lost"  # paid, but the notify never arrives (reconciliation finds it)

    CHOICES = [
        (NORMAL, "Normal: one notify"),
        (DUPLICATE, "Duplicate notifies"),
        (OUT_OF_ORDER, "Out of order: success, then a stale status"),
        (WRONG_AMOUNT, "Wrong amount (0.01 short)"),
        (OVERPAY, "Overpaid (1.00 more)"),
        (LOST, "Lost notify (never sent)"),
    ]
    VALUES = [value for value, _ in CHOICES]


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


def sandbox_paid_amount(*, amount: Decimal, mode: str) -> Decimal:
    """What the buyer 'paid' at the gateway in ``mode``."""
    if mode == NotifyMode.WRONG_AMOUNT:
        return amount - Decimal("0.01") if amount > Decimal("0.01") else amount + Decimal("0.01")
    if mode == NotifyMode.OVERPAY:
        return amount + Decimal("1.00")
    return amount


def _trade_key(reference: str) -> str:
    return f"sandbox:trade:{reference}"


def sandbox_trade_record(*, reference: str, amount: Decimal, currency: str) -> None:
    """The gateway's books: the buyer paid ``amount`` for ``reference``."""
    trade = {"trade_no": sandbox_trade_no(reference), "amount": f"{amount:.2f}", "currency": currency}
    django_rq.get_connection("default").set(_trade_key(reference), json.dumps(trade), ex=60 * 60 * 24 * 30)


def sandbox_trade_get(*, reference: str) -> dict | None:
    raw = django_rq.get_connection("default").get(_trade_key(reference))
    return json.loads(raw) if raw else None


def sandbox_notices(*, reference: str, amount: Decimal, currency: str, mode: str) -> list[dict]:
    """The signed notify bodies the gateway sends, in order, for ``mode``."""
    if mode == NotifyMode.LOST:
        return []

    def notice(status: str) -> dict:
        params = {
            "trade_no": sandbox_trade_no(reference),
            "out_trade_no": reference,
            "amount": f"{sandbox_paid_amount(amount=amount, mode=mode):.2f}",
            "currency": currency,
            "trade_status": status,
        }
        params["sign"] = sandbox_sign(params, settings.SANDBOX_SECRET)
        return params

    if mode == NotifyMode.DUPLICATE:
        return [notice(SUCCESS_STATUS), notice(SUCCESS_STATUS)]
    if mode == NotifyMode.OUT_OF_ORDER:
        return [notice(SUCCESS_STATUS), notice(STALE_STATUS)]
    return [notice(SUCCESS_STATUS)]


class SandboxProvider(PaymentProvider):
    plugin = "sandbox"
    can_query = True
    start_offline = True  # a link to the shop's own sandbox page

    def enabled(self) -> bool:
        return bool(settings.SANDBOX_ENABLED and settings.SANDBOX_SECRET)

    def start(self, *, payment) -> PayAction:
        return PayAction(kind=PayActionKind.REDIRECT, url=reverse("payments:sandbox-pay", args=[payment.reference]))

    def parse_callback(self, request) -> CallbackNotice:
        params = {k: request.POST.get(k, "") for k in (*SIGNED_FIELDS, "sign")}
        expected = sandbox_sign({k: params[k] for k in SIGNED_FIELDS}, settings.SANDBOX_SECRET)
        if not hmac.compare_digest(expected.encode(), params["sign"].encode("utf-8", "replace")):
            raise CallbackRejected("SIGNATURE_INVALID")
        trade_no = text_field(params, "trade_no", max_length=64)
        reference = text_field(params, "out_trade_no", max_length=40)
        status = text_field(params, "trade_status", max_length=15, required=False)
        currency = text_field(params, "currency", max_length=3, required=False).upper()
        succeeded = status == SUCCESS_STATUS
        return CallbackNotice(
            # Only the success takes the trade's own key: a status report that
            # arrives first must not make the success look like a duplicate.
            external_id=trade_no if succeeded else f"{trade_no}#{status}",
            transaction_id=trade_no,
            reference=reference,
            amount=money_parse(params["amount"]),
            currency=currency,
            succeeded=succeeded,
            payload=payload_clean({k: params[k] for k in (*SIGNED_FIELDS, "sign")}),
            verification="HMAC-SHA256 sign valid",
        )

    def reply_accepted(self) -> HttpResponse:
        return HttpResponse("success", content_type="text/plain")

    def reply_rejected(self, code: str) -> HttpResponse:
        return HttpResponse(f"fail {code}", status=400, content_type="text/plain")

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        digest = hmac.new(settings.SANDBOX_SECRET.encode(), f"refund:{payment.reference}".encode(), hashlib.sha256)
        return RefundResult(status=RefundResult.SUCCEEDED, external_id=f"SBXR{digest.hexdigest()[:20].upper()}")

    def query(self, *, payment) -> CallbackNotice | None:
        trade = sandbox_trade_get(reference=payment.reference)
        if trade is None:
            return None
        return CallbackNotice(
            external_id=trade["trade_no"], transaction_id=trade["trade_no"], reference=payment.reference,
            amount=Decimal(trade["amount"]), currency=trade["currency"], succeeded=True,
            payload={**trade, "out_trade_no": payment.reference, "trade_status": SUCCESS_STATUS},
            verification="sandbox gateway query",
        )
