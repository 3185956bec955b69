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
from decimal import Decimal

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from payments.providers.base import (
    CallbackNotice,
    CallbackRejected,
    PaymentProvider,
    RefundResult,
    money_parse,
    payload_clean,
    text_field,
)
from shop.access import order_link_sign

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


def epay_api_url() -> str:
    """``api.php`` beside the configured ``submit.php``."""
    return urllib.parse.urljoin(settings.EPAY_GATEWAY, "api.php")


class EpayProvider(PaymentProvider):
    id = "epay"
    notify_methods = ("GET", "POST")

    def enabled(self) -> bool:
        return bool(settings.EPAY_PID and settings.EPAY_KEY and settings.EPAY_GATEWAY)

    def start(self, *, payment) -> str:
        order = payment.order
        line = order.lines.select_related("product").order_by("id").first()
        name = (line.product.name if line else settings.SHOP_NAME)[:60]
        params = {
            "pid": settings.EPAY_PID,
            "type": settings.EPAY_TYPE,
            "out_trade_no": payment.reference,
            "notify_url": settings.SITE_URL + reverse("payments:notify", args=[self.id]),
            "return_url": settings.SITE_URL + reverse("shop:order", args=[order.order_no])
            + "?" + urllib.parse.urlencode({"s": order_link_sign(order.order_no)}),
            "name": name,
            "money": f"{payment.amount:.2f}",
        }
        params = {k: v for k, v in params.items() if v}
        params["sign"] = epay_sign(params, settings.EPAY_KEY)
        params["sign_type"] = "MD5"
        return f"{settings.EPAY_GATEWAY}?{urllib.parse.urlencode(params)}"

    def parse_callback(self, request) -> CallbackNotice:
        source = request.GET if request.method == "GET" else request.POST
        params = {name: source.get(name, "") for name in source}
        if not params.get("sign"):
            raise CallbackRejected("SIGNATURE_MISSING")
        if params.get("sign_type", "MD5").upper() != "MD5":
            raise CallbackRejected("SIGNATURE_INVALID", "only MD5 signs are accepted")
        if not epay_sign_valid(params, settings.EPAY_KEY):
            raise CallbackRejected("SIGNATURE_INVALID")
        # Authentic from here on: the checks below are about what it says.
        if not hmac.compare_digest(str(params.get("pid", "")).encode(), str(settings.EPAY_PID).encode()):
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

    def query(self, *, payment) -> CallbackNotice | None:
        """``api.php?act=order``: the gateway's record of the trade (the key
        goes in the query string, as EPay v1 wants: never log this URL)."""
        url = epay_api_url() + "?" + urllib.parse.urlencode(
            {"act": "order", "pid": settings.EPAY_PID, "key": settings.EPAY_KEY, "out_trade_no": payment.reference}
        )
        try:
            with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as response:
                data = json.loads(response.read(100_000).decode("utf-8"))
        except (urllib.error.URLError, TimeoutError, ValueError, OSError) as exc:
            logger.warning("epay query for %s failed: %s", payment.reference, type(exc).__name__)
            return None
        if not isinstance(data, dict) or str(data.get("code")) != "1" or str(data.get("status")) != "1":
            return None
        fields = {k: str(v) for k, v in data.items() if k in ("trade_no", "out_trade_no", "pid", "money", "type")}
        if fields.get("out_trade_no") != payment.reference or fields.get("pid") != str(settings.EPAY_PID):
            logger.warning("epay query for %s answered for another trade", payment.reference)
            return None
        try:
            trade_no = text_field(fields, "trade_no", max_length=64)
            amount = money_parse(fields.get("money", ""))
        except CallbackRejected:
            return None
        return CallbackNotice(
            external_id=trade_no, transaction_id=trade_no, reference=payment.reference, amount=amount,
            currency=CURRENCY, succeeded=True, payload=payload_clean(fields), verification="api.php?act=order query",
        )
