"""epusdt (github.com/assimon/epusdt): USDT-TRC20 through the owner's own
epusdt gateway. The shop asks for a trade in yuan, shows the wallet address
and the USDT amount as a QR code on its own pay page, and the gateway's chain
watcher notifies the shop once that exact USDT amount reached the wallet.

The original epusdt's API, as this plug-in speaks it:

- ``POST {gateway}/api/v1/order/create-transaction``, a signed JSON body
  ``order_id`` (our Payment.reference, at most 32 characters), ``amount`` (a
  JSON number, yuan), ``notify_url``, ``redirect_url``. The answer is always
  HTTP 200 with ``{status_code, message, data, request_id}``: status_code 200
  and data ``trade_id, order_id, amount, actual_amount`` (the USDT to send),
  ``token`` (the wallet address), ``expiration_time, payment_url``; 401 for
  a bad signature, 400 for a refused parameter, 10002 when the order_id was
  used before, 10003-10006 when no wallet, amount slot or rate is available.
- ``GET {gateway}/pay/check-status/{trade_id}``: ``data {trade_id, status}``
  (1 waiting, 2 paid, 3 expired), status_code 10008 for an unknown trade.
  Unsigned and unauthenticated, and it does not say the amount: ``query``
  reports the payment's own amount for a paid trade (the gateway opened that
  trade for exactly that amount, checked in ``start``).
- The notify: a JSON POST of ``trade_id, order_id, amount, actual_amount,
  token, block_transaction_id, status, signature``, sent once the trade is
  paid (status 2; the original never notifies expiry) and retried until the
  answer's body is exactly ``ok``.
- No refund API: a refund is USDT sent back by hand.

Signature = lowercase hex MD5 of the parameters except ``signature``, those
that are null and those that are empty, each written ``k=v`` (numbers as Go
prints a float64 at its shortest: 12.3 and 12, never 12.30 or 12.00, since
epusdt parses every JSON number into a float64), the ``k=v`` strings sorted,
joined with ``&``, with the api token (``api_auth_token`` in epusdt's .env)
appended directly.

Rate: the buyer pays the gateway's ``actual_amount``, whatever rate it used
(its chain watcher matches exactly that amount, and it may add 0.01 USDT
steps to tell two trades on one wallet apart). The owner's rate
(``usdt_rate``, shop currency per USDT) is only a guard: when the rate the
gateway implies (amount / actual_amount) is more than 2% worse for the shop
than the owner's, the payment is not started (RATE_OUT_OF_BOUNDS) and the
owner is told in the log; the buyer is never shown that amount. The trade
then left at the gateway expires by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import urllib.parse
from decimal import Decimal, InvalidOperation

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
from payments.providers.http import HttpAnswer, http_call

logger = logging.getLogger(__name__)

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


class EpusdtTokenMissing(Exception):
    code = "EPUSDT_TOKEN_MISSING"


class _Unsignable(ValueError):
    """A value epusdt cannot sign (an object, a list, a boolean): its own
    signer fails on it, so no genuine message carries one."""


def _go_float(value) -> str:
    """A number as epusdt writes it in the string to sign: parsed into a Go
    float64, printed at its shortest without exponent (12.3, 12, 0.0001)."""
    try:
        as_float = float(value)
    except (OverflowError, ValueError):
        raise _Unsignable("not a finite number") from None
    if not math.isfinite(as_float):
        raise _Unsignable("not a finite number")
    return format(Decimal(repr(as_float)).normalize(), "f")


def _sign_text(value) -> str:
    if isinstance(value, bool):
        raise _Unsignable("a boolean")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return _go_float(value)
    raise _Unsignable(type(value).__name__)


def epusdt_sign(params: dict, token: str) -> str:
    """The epusdt MD5 signature of ``params`` under the api ``token``."""
    if not token:
        # An empty token would make every signature computable by anyone.
        raise EpusdtTokenMissing("EPUSDT_TOKEN is empty: refusing to sign or verify")
    pairs = []
    for name, value in params.items():
        if name == "signature" or value is None:
            continue
        text = _sign_text(value)
        if text != "":
            pairs.append(f"{name}={text}")
    return hashlib.md5(("&".join(sorted(pairs)) + token).encode()).hexdigest()


def epusdt_sign_valid(params: dict, token: str) -> bool:
    """Constant-time check of ``params["signature"]``."""
    given = params.get("signature", "")
    try:
        expected = epusdt_sign(params, token)
    except _Unsignable:
        return False
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_object(raw: bytes) -> dict | None:
    """A JSON object (numbers as Python floats, as epusdt's own float64s), or None."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _decimal(value) -> Decimal | None:
    """A number (or numeric text) of an answer as a Decimal, as epusdt meant it."""
    try:
        text = _sign_text(value)
    except _Unsignable:
        return None
    if not text.isascii():  # Decimal() reads full-width and other Unicode digits: money is ASCII
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _status_text(value) -> str:
    """A trade status (1, 2, 3) as text; "" when it is not a whole number."""
    try:
        text = _sign_text(value)
    except _Unsignable:
        return ""
    return text if text.isascii() and text.isdigit() else ""


def usdt_text(amount: Decimal) -> str:
    """A USDT amount for the buyer: two places at least, four at most (1.70, 1.7571)."""
    return f"{amount:.2f}" if amount == amount.quantize(Decimal("0.01")) else f"{amount.normalize():f}"


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
