"""The epusdt plug-in: opening a trade, the notify, the manual refund, check-status and the probe."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from decimal import Decimal

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from payments.providers.base import (
    CallbackNotice,
    CallbackRejected,
    PayAction,
    PayActionKind,
    PaymentProvider,
    ProbeResult,
    ProviderUnreachable,
    RefundResult,
    money_parse,
    payload_clean,
    text_field,
)
from payments.providers.epusdt.payloads import _decimal, _json_object, _status_text, usdt_text
from payments.providers.epusdt.signing import _sign_text, epusdt_sign, epusdt_sign_valid
from payments.providers.http import HttpAnswer, http_call

logger = logging.getLogger(__package__)  # the module's name before the split: log filters and tests name it

CURRENCY = "CNY"  # epusdt converts yuan (its rate is CNY per USDT)
USDT = "USDT"
CREATE_PATH = "/api/v1/order/create-transaction"
STATUS_PATH = "/pay/check-status/"
STATUS_WAITING, STATUS_PAID, STATUS_EXPIRED = "1", "2", "3"
ANSWER_OK = 200
ANSWER_SIGNATURE_ERROR = 401
ANSWER_PARAMS_REFUSED = 400
ANSWER_ORDER_UNKNOWN = 10008
# The gateway's refusals of create-transaction, as ProviderUnreachable codes.
REFUSALS = {
    401: "GATEWAY_SIGNATURE_REJECTED",
    10002: "GATEWAY_ORDER_EXISTS",
    10003: "GATEWAY_NO_WALLET",
    10004: "GATEWAY_AMOUNT_REFUSED",
    10005: "GATEWAY_AMOUNT_REFUSED",
    10006: "GATEWAY_RATE_ERROR",
}
RATE_TOLERANCE = Decimal("0.02")  # the gateway's rate may be this much worse for the shop than the owner's
USDT_PLACES = 4
ADDRESS = re.compile(r"^[A-Za-z0-9]{20,128}$")  # a TRON (T…, base58) or other chain's address: QR-safe
PROBE_TRADE = "KDPROBE0000000000000"
PROBE_ORDER = "KDPROBE0000000000000"
TOKEN_FIX = "EPUSDT_TOKEN must equal the api_auth_token in epusdt's .env."
GATEWAY_FIX = ("Check EPUSDT_GATEWAY (the epusdt base URL, e.g. https://usdt.example.com, without /api/...) "
               "and that this server reaches it.")


class EpusdtProvider(PaymentProvider):
    plugin = "epusdt"
    required_secrets = ("token",)
    required_settings = ("gateway",)
    can_query = True

    @property
    def _token(self) -> str:
        return self.config.secret("token")

    def _url(self, path: str) -> str:
        return self.config.gateway.rstrip("/") + path

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[dict, HttpAnswer]:
        """One call to the gateway; its JSON answer. Raises ProviderUnreachable.
        Never logs the body: it carries the signature."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"} if body is not None else {}
        answer = http_call(method, self._url(path), body=data, headers=headers)
        if answer.status != 200:
            logger.warning("epusdt %s answered HTTP %s", self.id, answer.status)
            raise ProviderUnreachable("GATEWAY_HTTP_ERROR", f"HTTP {answer.status}")
        parsed = _json_object(answer.body)
        if parsed is None:
            raise ProviderUnreachable("BAD_ANSWER", "epusdt did not answer a JSON object")
        return parsed, answer

    def start(self, *, payment) -> PayAction:
        if payment.currency != CURRENCY:
            raise ProviderUnreachable("CURRENCY_UNSUPPORTED", f"epusdt converts {CURRENCY} only")
        order = payment.order
        params = {
            "order_id": payment.reference,
            # A JSON number, as epusdt's request struct wants (a string is refused).
            "amount": float(payment.amount),
            "notify_url": self.notify_url(),
            # No secret in the redirect URL: it reaches the gateway's logs and the
            # browser's history. The buyer's own session opens the order page.
            "redirect_url": settings.SITE_URL + reverse("shop:order", args=[order.order_no]),
        }
        params["signature"] = epusdt_sign(params, self._token)
        answer, _ = self._call("POST", CREATE_PATH, params)
        code = answer.get("status_code")
        if code != ANSWER_OK:
            refusal = REFUSALS.get(code, "GATEWAY_REFUSED") if isinstance(code, int) else "BAD_ANSWER"
            message = str(answer.get("message", ""))[:200]
            logger.warning("epusdt %s refused trade %s: %s %s", self.id, payment.reference, code, message)
            if code == ANSWER_SIGNATURE_ERROR:
                logger.warning("epusdt %s: %s", self.id, TOKEN_FIX)
            raise ProviderUnreachable(refusal, f"epusdt {code}: {message}")
        return self._pay_action(payment=payment, data=answer.get("data"))

    def _pay_action(self, *, payment, data) -> PayAction:
        """The trade the gateway opened, checked: for our order and amount,
        a wallet address, a USDT amount, a rate within the owner's bounds."""
        if not isinstance(data, dict):
            raise ProviderUnreachable("BAD_ANSWER", "create-transaction answered no trade")
        fields = {k: data.get(k, "") for k in ("trade_id", "order_id", "token", "payment_url")}
        try:
            trade_id = text_field(fields, "trade_id", max_length=64)
            address = text_field(fields, "token", max_length=128)
            payment_url = text_field(fields, "payment_url", max_length=500, required=False)
        except CallbackRejected:
            raise ProviderUnreachable("BAD_ANSWER", "create-transaction answered a malformed trade") from None
        if fields["order_id"] != payment.reference or _decimal(data.get("amount")) != payment.amount:
            logger.warning("epusdt %s answered another trade for %s", self.id, payment.reference)
            raise ProviderUnreachable("BAD_ANSWER", "create-transaction answered for another order or amount")
        if not ADDRESS.match(address):
            raise ProviderUnreachable("BAD_ANSWER", "create-transaction answered a malformed wallet address")
        usdt = _decimal(data.get("actual_amount"))
        if usdt is None or usdt <= 0 or usdt.normalize().as_tuple().exponent < -USDT_PLACES:
            raise ProviderUnreachable("BAD_ANSWER", "create-transaction answered a malformed USDT amount")
        rate = payment.amount / usdt  # shop currency per USDT, as the gateway priced this trade
        guard = self.config.usdt_rate
        if guard and rate > guard * (1 + RATE_TOLERANCE):
            logger.warning(
                "epusdt %s: trade %s not started: the gateway's rate %s %s/USDT is more than %s%% worse than "
                "the owner's rate %s (check epusdt's forced_usdt_rate or EPUSDT_RATE)", self.id, payment.reference,
                f"{rate:.4f}", payment.currency, RATE_TOLERANCE * 100, guard)
            raise ProviderUnreachable("RATE_OUT_OF_BOUNDS", f"gateway rate {rate:.4f} vs owner's {guard}")
        if not payment_url.startswith(("https://", "http://")):
            payment_url = ""  # the shop's own pay page shows the QR code either way
        return PayAction(kind=PayActionKind.QR, qr=address, address=address, amount=usdt_text(usdt),
                         currency=USDT, checkout_id=trade_id, url=payment_url)

    def parse_callback(self, request) -> CallbackNotice:
        params = _json_object(request.body)
        if params is None:
            raise CallbackRejected("PAYLOAD_INVALID", "the notify is not a JSON object")
        if not params.get("signature"):
            raise CallbackRejected("SIGNATURE_MISSING")
        if not epusdt_sign_valid(params, self._token):
            raise CallbackRejected("SIGNATURE_INVALID")
        # Authentic from here on: the checks below are about what it says.
        # Kept as evidence as signed (numbers as in the string to sign).
        evidence = {str(k): _sign_text(v) for k, v in params.items() if v is not None}
        trade_id = text_field(evidence, "trade_id", max_length=64)
        reference = text_field(evidence, "order_id", max_length=40)
        for name in ("actual_amount", "token", "block_transaction_id"):
            text_field(evidence, name, max_length=128, required=False)
        status = _status_text(params.get("status"))
        if not status:
            raise CallbackRejected("PAYLOAD_INVALID", "status is not a trade status")
        amount = _decimal(params.get("amount"))
        # The yuan amount comes as a float (12.3): two places, unless it has more.
        raw = f"{amount:.2f}" if amount is not None and amount == amount.quantize(Decimal("0.01")) else \
            evidence.get("amount", "")
        succeeded = status == STATUS_PAID
        return CallbackNotice(
            # A status report other than paid must not take the payment's
            # idempotency key, or the payment would be answered as a duplicate.
            external_id=trade_id if succeeded else f"{trade_id}#{status}",
            transaction_id=trade_id,
            reference=reference,
            amount=money_parse(raw),
            currency=CURRENCY,
            succeeded=succeeded,
            payload=payload_clean(evidence),
            verification="epusdt MD5 signature valid",
        )

    def reply_accepted(self) -> HttpResponse:
        # epusdt retries until the body is exactly "ok".
        return HttpResponse("ok", content_type="text/plain")

    def reply_rejected(self, code: str) -> HttpResponse:
        return HttpResponse("fail", status=400, content_type="text/plain")

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        evidence = self._paid_evidence(payment)
        paid_usdt = _decimal(evidence.get("actual_amount")) or _decimal((payment.pay_action or {}).get("amount"))
        if paid_usdt is None:
            usdt = "the USDT amount paid"
        elif amount == payment.amount:
            usdt = f"{usdt_text(paid_usdt)} USDT"
        else:
            part = (paid_usdt * amount / payment.amount).quantize(Decimal("0.0001"))
            usdt = f"{usdt_text(part)} USDT ({amount:.2f} of {payment.amount:.2f} {payment.currency})"
        block = evidence.get("block_transaction_id") or "(unknown: see the wallet's history)"
        wallet = evidence.get("token") or (payment.pay_action or {}).get("address") or "(unknown)"
        return RefundResult(
            status=RefundResult.MANUAL,
            instructions=(
                f"epusdt has no refund API: send {usdt} back by hand to the buyer's address, the sender of "
                f"block transaction {block} (paid to our wallet {wallet}); epusdt trade "
                f"{payment.external_id or payment.checkout_id or '(unknown)'}, merchant order {payment.reference}."
            ),
        )

    @staticmethod
    def _paid_evidence(payment) -> dict:
        """The signed notify that paid ``payment`` (its USDT amount, wallet, block), if one did."""
        payloads = [event.payload for event in payment.events.filter(succeeded=True).order_by("id")]
        signed = [p for p in payloads if isinstance(p, dict) and p.get("block_transaction_id")]
        return dict((signed or [p for p in payloads if isinstance(p, dict)] or [{}])[0])

    def _status(self, trade_id: str) -> tuple[dict, HttpAnswer]:
        return self._call("GET", STATUS_PATH + urllib.parse.quote(trade_id, safe=""))

    def query(self, *, payment) -> CallbackNotice | None:
        """``/pay/check-status/{trade_id}``: the gateway's status of the trade
        ``start`` opened (its id kept as the payment's checkout id)."""
        trade_id = payment.checkout_id
        if not trade_id:
            return None  # never opened at the gateway: nothing to ask about
        answer, _ = self._status(trade_id)
        code = answer.get("status_code")
        if code == ANSWER_ORDER_UNKNOWN:
            return None
        data = answer.get("data")
        if code != ANSWER_OK or not isinstance(data, dict):
            raise ProviderUnreachable("BAD_ANSWER", f"check-status answered {str(code)[:20]}")
        status = _status_text(data.get("status"))
        if data.get("trade_id") != trade_id or status not in (STATUS_WAITING, STATUS_PAID, STATUS_EXPIRED):
            logger.warning("epusdt %s check-status for %s answered nonsense", self.id, payment.reference)
            raise ProviderUnreachable("BAD_ANSWER", "check-status answered about another trade or status")
        if status != STATUS_PAID:
            return None
        return CallbackNotice(
            external_id=trade_id, transaction_id=trade_id, reference=payment.reference, amount=payment.amount,
            currency=payment.currency, succeeded=True,
            payload={"trade_id": trade_id, "status": status, "source": "check-status"},
            verification="epusdt check-status paid; amount not reported",
        )

    def probe(self) -> ProbeResult:
        """Ask check-status about a trade that does not exist (the gateway
        answers "not found"), then test the token: check-status is unsigned,
        so a create-transaction signed as usual but without an amount is
        sent. epusdt checks the signature first (401 when the token differs)
        and then refuses the missing amount (400): nothing is created."""
        try:
            answer, http = self._status(PROBE_TRADE)
            server_time = http.server_time
            if answer.get("status_code") == ANSWER_OK:
                return ProbeResult(ok=False, code="BAD_ANSWER", server_time=server_time,
                                   detail="check-status reported a trade that does not exist", fix=GATEWAY_FIX)
            if answer.get("status_code") != ANSWER_ORDER_UNKNOWN:
                return ProbeResult(ok=False, code="BAD_ANSWER", server_time=server_time,
                                   detail=f"check-status answered {str(answer.get('status_code'))[:20]}",
                                   fix=GATEWAY_FIX)
            params = {"order_id": PROBE_ORDER}
            params["signature"] = epusdt_sign(params, self._token)
            answer, http = self._call("POST", CREATE_PATH, params)
        except ProviderUnreachable as exc:
            code = "UNREACHABLE" if exc.code == "GATEWAY_UNREACHABLE" else "BAD_ANSWER"
            return ProbeResult(ok=False, code=code, detail=f"{self.config.gateway}: {exc.code} {exc}"[:300],
                               fix=GATEWAY_FIX)
        code, message = answer.get("status_code"), str(answer.get("message", ""))[:200]
        if code == ANSWER_SIGNATURE_ERROR:
            return ProbeResult(ok=False, code="AUTH_FAILED", detail=f"epusdt refused the signature: {message}",
                               fix=TOKEN_FIX, server_time=http.server_time or server_time)
        if code != ANSWER_PARAMS_REFUSED:
            return ProbeResult(ok=False, code="BAD_ANSWER", detail=f"create-transaction answered {str(code)[:20]}",
                               fix=GATEWAY_FIX, server_time=http.server_time or server_time)
        return ProbeResult(ok=True, code="OK", server_time=http.server_time or server_time,
                           detail="epusdt answers: trade not found; the token's signature is accepted")
