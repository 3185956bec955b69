"""易支付 (EPay v1): the ``submit.php`` redirect, the MD5-signed notify, the
``api.php?act=order`` query. EPay v1 has no refund API: a refund is recorded
and the owner is told to make it by hand in the merchant panel.

Sign = lowercase hex MD5 of the parameters except ``sign``/``sign_type`` and
those with empty values, sorted by name, joined as ``k=v&k=v`` with raw (not
URL-encoded) values, with the merchant key appended directly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
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
from payments.providers.http import http_date_parse

logger = logging.getLogger(__name__)

UNSIGNED = ("sign", "sign_type")
SUCCESS_STATUS = "TRADE_SUCCESS"
CURRENCY = "CNY"  # EPay gateways settle in yuan only
QUERY_TIMEOUT = 10


class EpayKeyMissing(Exception):
    code = "EPAY_KEY_MISSING"


def epay_sign(params: dict, key: str) -> str:
    """The EPay v1 MD5 sign of ``params`` under the merchant ``key``."""
    if not key:
        # An empty key would make every sign computable by anyone.
        raise EpayKeyMissing("EPAY_KEY is empty: refusing to sign or verify")
    canonical = "&".join(
        f"{name}={params[name]}" for name in sorted(params) if name not in UNSIGNED and params[name] not in ("", None)
    )
    return hashlib.md5((canonical + key).encode()).hexdigest()


def epay_sign_valid(params: dict, key: str) -> bool:
    """Constant-time check of ``params["sign"]``."""
    expected = epay_sign(params, key)
    given = params.get("sign", "")
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def epay_api_url(gateway: str) -> str:
    """``api.php`` beside the gateway's ``submit.php``."""
    return urllib.parse.urljoin(gateway, "api.php")


class EpayProvider(PaymentProvider):
    plugin = "epay"
    notify_methods = ("GET", "POST")
    required_secrets = ("key",)
    required_settings = ("merchant_id", "gateway")
    can_query = True
    start_offline = True  # a redirect URL signed here with the merchant key

    @property
    def _key(self) -> str:
        return self.config.secret("key")

    def start(self, *, payment) -> PayAction:
        order = payment.order
        name = payment.subject[:60]
        params = {
            "pid": self.config.merchant_id,
            "type": self.config.channel,
            "out_trade_no": payment.reference,
            "notify_url": self.notify_url(),
            # No secret in the return URL: it reaches the gateway's logs and the
            # browser's history. The buyer's own session opens the order page.
            "return_url": settings.SITE_URL + reverse("shop:order", args=[order.order_no]),
            "name": name,
            "money": f"{payment.amount:.2f}",
        }
        params = {k: v for k, v in params.items() if v}
        params["sign"] = epay_sign(params, self._key)
        params["sign_type"] = "MD5"
        return PayAction(kind=PayActionKind.REDIRECT, url=f"{self.config.gateway}?{urllib.parse.urlencode(params)}")

    def parse_callback(self, request) -> CallbackNotice:
        source = request.GET if request.method == "GET" else request.POST
        params = {name: source.get(name, "") for name in source}
        if not params.get("sign"):
            raise CallbackRejected("SIGNATURE_MISSING")
        if params.get("sign_type", "MD5").upper() != "MD5":
            raise CallbackRejected("SIGNATURE_INVALID", "only MD5 signs are accepted")
        if not epay_sign_valid(params, self._key):
            raise CallbackRejected("SIGNATURE_INVALID")
        # Authentic from here on: the checks below are about what it says.
        if not hmac.compare_digest(str(params.get("pid", "")).encode(), str(self.config.merchant_id).encode()):
            raise CallbackRejected("MERCHANT_MISMATCH")
        trade_no = text_field(params, "trade_no", max_length=64)
        reference = text_field(params, "out_trade_no", max_length=40)
        status = text_field(params, "trade_status", max_length=32)
        succeeded = status == SUCCESS_STATUS
        return CallbackNotice(
            # A status report other than success must not take the success's
            # idempotency key, or the success would be answered as a duplicate.
            external_id=trade_no if succeeded else f"{trade_no}#{status}",
            transaction_id=trade_no,
            reference=reference,
            amount=money_parse(params.get("money", "")),
            currency=CURRENCY,
            succeeded=succeeded,
            payload=payload_clean(params),
            verification=f"MD5 sign valid ({request.method})",
        )

    def reply_accepted(self) -> HttpResponse:
        return HttpResponse("success", content_type="text/plain")

    def reply_rejected(self, code: str) -> HttpResponse:
        # Anything but "success" makes the gateway retry; the code is for our logs.
        return HttpResponse("fail", status=400, content_type="text/plain")

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        return RefundResult(
            status=RefundResult.MANUAL,
            instructions=(
                f"EPay v1 has no refund API. Refund {amount:.2f} {payment.currency} by hand in the EPay merchant "
                f"panel: merchant order {payment.reference}, gateway trade {payment.external_id or '(unknown)'}. "
                "The order is already marked refunded and its keys are back in stock."
            ),
        )

    def _api(self, params: dict) -> tuple[dict, datetime | None]:
        """``api.php`` with ``params`` (the key goes in the query string, as
        EPay v1 wants: never log this URL). Raises ProviderUnreachable."""
        url = epay_api_url(self.config.gateway) + "?" + urllib.parse.urlencode(
            {"pid": self.config.merchant_id, "key": self._key, **params})
        try:
            with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as response:
                server_time = http_date_parse(response.headers.get("Date"))
                data = json.loads(response.read(100_000).decode("utf-8"))
        except (urllib.error.URLError, TimeoutError, ValueError, OSError) as exc:
            # Never the exception's text: it may hold the URL, and the URL the key.
            logger.warning("epay %s api.php call failed: %s", self.id, type(exc).__name__)
            raise ProviderUnreachable("GATEWAY_UNREACHABLE", type(exc).__name__) from None
        if not isinstance(data, dict):
            raise ProviderUnreachable("BAD_ANSWER", "api.php did not answer a JSON object")
        return data, server_time

    def query(self, *, payment) -> CallbackNotice | None:
        """``api.php?act=order``: the gateway's record of the trade."""
        data, _ = self._api({"act": "order", "out_trade_no": payment.reference})
        if str(data.get("code")) != "1" or str(data.get("status")) != "1":
            return None  # not found, or not paid
        fields = {k: str(v) for k, v in data.items() if k in ("trade_no", "out_trade_no", "pid", "money", "type")}
        if fields.get("out_trade_no") != payment.reference or fields.get("pid") != str(self.config.merchant_id):
            logger.warning("epay query for %s answered for another trade", payment.reference)
            raise ProviderUnreachable("BAD_ANSWER", "api.php answered about another trade")
        try:
            trade_no = text_field(fields, "trade_no", max_length=64)
            amount = money_parse(fields.get("money", ""))
        except CallbackRejected:
            raise ProviderUnreachable("BAD_ANSWER", "api.php answered a malformed trade") from None
        return CallbackNotice(
            external_id=trade_no, transaction_id=trade_no, reference=payment.reference, amount=amount,
            currency=CURRENCY, succeeded=True, payload=payload_clean(fields), verification="api.php?act=order query",
        )

    def probe(self) -> ProbeResult:
        """Ask ``api.php`` about an order that does not exist: a gateway that
        knows the merchant answers "not found" (code -1 with a message about
        the order); a wrong pid or key is answered with a message about them."""
        try:
            data, server_time = self._api({"act": "order", "out_trade_no": "KDPROBE0000000000"})
        except ProviderUnreachable as exc:
            return ProbeResult(ok=False, code="UNREACHABLE", detail=f"{self.config.gateway}: {exc}",
                               fix="Check the gateway URL (it ends in submit.php) and that this server reaches it.")
        message = str(data.get("msg", ""))[:200]
        if str(data.get("code")) == "1":
            return ProbeResult(ok=False, code="BAD_ANSWER", server_time=server_time,
                               detail="api.php reported a trade for an order that does not exist",
                               fix="The gateway is not answering about this merchant: check the gateway URL.")
        lowered = message.lower()
        if any(word in lowered for word in ("key", "密钥", "pid", "商户", "sign", "签名")):
            return ProbeResult(ok=False, code="AUTH_FAILED", detail=f"api.php: {message}", server_time=server_time,
                               fix="The merchant id (pid) or key is wrong: copy both again from the merchant panel.")
        return ProbeResult(ok=True, code="OK", detail=f"api.php: {message or 'order not found'}",
                           server_time=server_time)
