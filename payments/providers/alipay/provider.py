"""The Alipay plug-in: checkout (f2f QR, page and wap forms), the notify, refunds, the query and the probe."""

from __future__ import annotations

import hmac
import json
import logging
import urllib.parse
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from payments.providers.alipay.answers import AlipayAnswer, alipay_response_raw
from payments.providers.alipay.signing import (
    SIGN_TYPE,
    AlipayKeyInvalid,
    _private_key,
    _public_key,
    alipay_sign,
    alipay_sign_content,
    alipay_sign_valid,
    alipay_timestamp,
)
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
    money_parse,
    payload_clean,
    text_field,
)
from payments.providers.http import http_call

logger = logging.getLogger(__package__)  # the module's name before the split: log filters and tests name it

CURRENCY = "CNY"  # the open platform's total_amount is in yuan
PAID_STATUSES = ("TRADE_SUCCESS", "TRADE_FINISHED")
UNPAID_STATUSES = ("WAIT_BUYER_PAY", "TRADE_CLOSED")
NOT_FOUND = ("40004", "ACQ.TRADE_NOT_EXIST")
PROBE_TRADE = "KDPROBE0000000000"
# The web channels: (method, product_code).
WEB_CHANNELS = {
    "page": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),  # 电脑网站支付
    "wap": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),  # 手机网站支付
}
SUBJECT_MAX = 128
# Alipay refuses these in a subject.
SUBJECT_FORBIDDEN = str.maketrans({c: " " for c in "/=&"})


class AlipayProvider(PaymentProvider):
    plugin = "alipay"
    required_secrets = ("private_key", "public_key")
    required_settings = ("merchant_id", "gateway")
    can_query = True

    # --- keys and requests ------------------------------------------------------

    def _app_key(self) -> RSAPrivateKey:
        return _private_key(self.config.secret("private_key"))

    def _alipay_key(self) -> RSAPublicKey:
        return _public_key(self.config.secret("public_key"))

    def _signed(self, method: str, biz: dict, **extra) -> dict:
        """The common parameters of ``method`` with ``biz`` as biz_content, signed
        with the app key. Raises AlipayKeyInvalid."""
        params = {
            "app_id": self.config.merchant_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": SIGN_TYPE,
            "timestamp": alipay_timestamp(),
            "version": "1.0",
            "notify_url": self.notify_url(),
            "biz_content": json.dumps(biz, separators=(",", ":"), ensure_ascii=False),
            **extra,
        }
        params = {k: v for k, v in params.items() if v not in ("", None)}
        params["sign"] = alipay_sign(alipay_sign_content(params), self._app_key())
        return params

    def _gateway_url(self) -> str:
        # Alipay decodes the body by the charset of the URL.
        separator = "&" if "?" in self.config.gateway else "?"
        return f"{self.config.gateway}{separator}charset=utf-8"

    def _call(self, method: str, biz: dict) -> AlipayAnswer:
        """One API call; the answer with its sign checked against Alipay's key
        (not refused here: the probe reads an unsigned refusal). Raises
        ProviderUnreachable (KEY_INVALID when a key does not load)."""
        try:
            params = self._signed(method, biz)
            alipay_key = self._alipay_key()
        except AlipayKeyInvalid as exc:
            logger.warning("alipay %s: %s", self.id, exc)
            raise ProviderUnreachable("KEY_INVALID", str(exc)) from None
        answer = http_call(
            "POST", self._gateway_url(), body=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        if answer.status != 200:
            logger.warning("alipay %s %s answered HTTP %s", self.id, method, answer.status)
            raise ProviderUnreachable(f"HTTP_{answer.status}", f"{method} answered HTTP {answer.status}")
        try:
            text = answer.body.decode("utf-8")
            document = json.loads(text)
        except ValueError:
            raise ProviderUnreachable("BAD_ANSWER", f"{method} did not answer JSON") from None
        if not isinstance(document, dict):
            raise ProviderUnreachable("BAD_ANSWER", f"{method} did not answer a JSON object")
        # A request Alipay cannot route is answered under error_response.
        for name in (method.replace(".", "_") + "_response", "error_response"):
            raw = alipay_response_raw(text, name)
            if raw is not None:
                break
        else:
            raise ProviderUnreachable("BAD_ANSWER", f"{method} answered without its response object")
        sign = document.get("sign")
        if not sign:
            state = "MISSING"
        else:
            state = "VALID" if alipay_sign_valid(raw, sign, alipay_key) else "INVALID"
        return AlipayAnswer(data=json.loads(raw), sign_state=state, server_time=answer.server_time)

    def _call_verified(self, method: str, biz: dict) -> AlipayAnswer:
        answer = self._call(method, biz)
        if not answer.verified:
            code = "SIGNATURE_MISSING" if answer.sign_state == "MISSING" else "SIGNATURE_INVALID"
            if answer.sign_state == "MISSING" and answer.code not in ("", "10000", NOT_FOUND[0]):
                # Alipay may leave a refusal of the request itself (40001/40002
                # isv.*, 20000) unsigned: still a failure, named by its code.
                code = answer.error
            logger.warning("alipay %s %s answer refused: %s", self.id, method, code)
            raise ProviderUnreachable(code, f"{method} answer: {code}")
        return answer

    # --- checkout ---------------------------------------------------------------

    def start(self, *, payment) -> PayAction:
        if payment.currency != CURRENCY:
            raise ProviderUnreachable("CURRENCY_UNSUPPORTED", f"Alipay takes {CURRENCY}, not {payment.currency}")
        order = payment.order
        line = order.lines.select_related("product").order_by("id").first()
        subject = (str(line.product) if line else settings.SHOP_NAME).translate(SUBJECT_FORBIDDEN).strip()
        biz = {
            "out_trade_no": payment.reference,
            "total_amount": f"{payment.amount:.2f}",
            "subject": subject[:SUBJECT_MAX] or payment.reference,
        }
        channel = self.config.channel or "f2f"
        if channel in WEB_CHANNELS:
            method, product_code = WEB_CHANNELS[channel]
            try:
                fields = self._signed(
                    method, {**biz, "product_code": product_code},
                    # No secret in the return URL: it reaches Alipay's logs and the
                    # browser's history. The buyer's own session opens the order page.
                    return_url=settings.SITE_URL + reverse("shop:order", args=[order.order_no]),
                )
            except AlipayKeyInvalid as exc:
                logger.warning("alipay %s: %s", self.id, exc)
                raise ProviderUnreachable("KEY_INVALID", str(exc)) from None
            return PayAction(kind=PayActionKind.FORM, url=self._gateway_url(), fields=fields)
        if channel != "f2f":
            raise ProviderUnreachable("CHANNEL_UNKNOWN", f"ALIPAY_CHANNEL {channel!r} is not f2f, page or wap")
        answer = self._call_verified("alipay.trade.precreate", biz)
        if answer.code != "10000":
            code = answer.error
            logger.warning("alipay %s precreate of %s refused: %s", self.id, payment.reference, code)
            raise ProviderUnreachable(code, f"alipay.trade.precreate: {code} {answer.field('sub_msg')}"[:300])
        qr = answer.field("qr_code")
        if answer.field("out_trade_no") != payment.reference or not qr.startswith("https://") or len(qr) > 500:
            raise ProviderUnreachable("BAD_ANSWER", "alipay.trade.precreate answered no usable qr_code")
        # The https://qr.alipay.com/… link also opens the Alipay app on a phone.
        return PayAction(kind=PayActionKind.QR, qr=qr, app_url=qr)

    # --- the notify -------------------------------------------------------------

    def parse_callback(self, request) -> CallbackNotice:
        params = {name: request.POST.get(name, "") for name in request.POST}
        sign = params.get("sign", "")
        if not sign:
            raise CallbackRejected("SIGNATURE_MISSING")
        if params.get("sign_type") != SIGN_TYPE:
            raise CallbackRejected("SIGNATURE_INVALID", "only RSA2 signs are accepted")
        try:
            alipay_key = self._alipay_key()
        except AlipayKeyInvalid as exc:
            logger.error("alipay %s: %s: every notify is refused", self.id, exc)
            raise CallbackRejected("SIGNATURE_INVALID", str(exc)) from None
        content = alipay_sign_content(params, unsigned=("sign", "sign_type"), skip_empty=False)
        if not alipay_sign_valid(content, sign, alipay_key):
            raise CallbackRejected("SIGNATURE_INVALID")
        # Authentic from here on: the checks below are about what it says.
        if not hmac.compare_digest(str(params.get("app_id", "")).encode(), str(self.config.merchant_id).encode()):
            raise CallbackRejected("MERCHANT_MISMATCH")
        trade_no = text_field(params, "trade_no", max_length=64)
        reference = text_field(params, "out_trade_no", max_length=64)
        common = {"transaction_id": trade_no, "reference": reference, "currency": CURRENCY,
                  "payload": payload_clean(params), "verification": "RSA2 sign valid"}
        if params.get("refund_fee"):
            # After a refund (ours or the merchant console's) Alipay reports
            # the trade again with the amount refunded so far.
            refund_id = text_field(params, "out_biz_no", max_length=64, required=False) or text_field(
                params, "gmt_refund", max_length=40)
            return CallbackNotice(external_id=f"{trade_no}#refund#{refund_id}", kind=NoticeKind.REFUND,
                                  amount=money_parse(params["refund_fee"]), succeeded=True, **common)
        status = text_field(params, "trade_status", max_length=32)
        succeeded = status in PAID_STATUSES
        return CallbackNotice(
            # TRADE_FINISHED (no refund possible any more) after TRADE_SUCCESS
            # shares its key: a duplicate. A status report other than paid must
            # not take that key, or the payment would be answered as a duplicate.
            external_id=trade_no if succeeded else f"{trade_no}#{status}",
            amount=money_parse(params.get("total_amount", "")),
            succeeded=succeeded,
            **common,
        )

    def reply_accepted(self) -> HttpResponse:
        return HttpResponse("success", content_type="text/plain")

    def reply_rejected(self, code: str) -> HttpResponse:
        # Anything but "success" makes Alipay retry (8 times over 25 hours); the code is for our logs.
        return HttpResponse("fail", status=400, content_type="text/plain")

    # --- after the payment ------------------------------------------------------

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        out_request_no = f"refund-{payment.reference}"
        try:
            answer = self._call_verified("alipay.trade.refund", {
                "out_trade_no": payment.reference, "refund_amount": f"{amount:.2f}", "out_request_no": out_request_no,
            })
        except ProviderUnreachable as exc:
            # Nothing known to be refunded: asking again (the same out_request_no) refunds at most once.
            raise RefundFailed(exc.code, f"alipay.trade.refund: {exc}") from None
        if answer.code != "10000":
            code = answer.error
            logger.warning("alipay %s refund of %s refused: %s", self.id, payment.reference, code)
            raise RefundFailed(code, f"alipay.trade.refund: {code} {answer.field('sub_msg')}"[:300])
        return RefundResult(status=RefundResult.SUCCEEDED, external_id=answer.field("trade_no") or out_request_no)

    def query(self, *, payment) -> CallbackNotice | None:
        """``alipay.trade.query``: Alipay's record of the trade."""
        answer = self._call_verified("alipay.trade.query", {"out_trade_no": payment.reference})
        if (answer.code, answer.sub_code) == NOT_FOUND:
            return None  # never paid (the buyer has not scanned, or not even opened the cashier)
        if answer.code != "10000":
            code = answer.error
            logger.warning("alipay %s query of %s unanswered: %s", self.id, payment.reference, code)
            raise ProviderUnreachable(code, f"alipay.trade.query: {code}")
        if answer.field("out_trade_no") != payment.reference:
            logger.warning("alipay query for %s answered for another trade", payment.reference)
            raise ProviderUnreachable("BAD_ANSWER", "alipay.trade.query answered about another trade")
        status = answer.field("trade_status")
        if status in UNPAID_STATUSES:
            return None
        if status not in PAID_STATUSES:
            raise ProviderUnreachable("BAD_ANSWER", f"alipay.trade.query: trade_status {status[:32]!r}")
        fields = {k: answer.field(k) for k in ("trade_no", "out_trade_no", "trade_status", "total_amount",
                                               "buyer_pay_amount", "receipt_amount", "send_pay_date")
                  if k in answer.data}
        try:
            trade_no = text_field(fields, "trade_no", max_length=64)
            amount = money_parse(fields.get("total_amount", ""))
        except CallbackRejected:
            raise ProviderUnreachable("BAD_ANSWER", "alipay.trade.query answered a malformed trade") from None
        return CallbackNotice(
            external_id=trade_no, transaction_id=trade_no, reference=payment.reference, amount=amount,
            currency=CURRENCY, succeeded=True, payload=payload_clean(fields), verification="alipay.trade.query",
        )

    def probe(self) -> ProbeResult:
        """Ask ``alipay.trade.query`` about an order that does not exist: with
        the right app key and app id Alipay answers "trade not found"
        (40004 ACQ.TRADE_NOT_EXIST), signed with its key."""
        gateway = self.config.gateway
        try:
            answer = self._call("alipay.trade.query", {"out_trade_no": PROBE_TRADE})
        except ProviderUnreachable as exc:
            if exc.code == "KEY_INVALID":
                return ProbeResult(
                    ok=False, code="AUTH_FAILED", detail=str(exc),
                    fix="Paste ALIPAY_PRIVATE_KEY (the app private key, PKCS#8 or PKCS#1) and ALIPAY_PUBLIC_KEY "
                        "(Alipay's public key) again, as PEM or the bare base64 the Alipay console shows.")
            if exc.code == "GATEWAY_UNREACHABLE":
                return ProbeResult(ok=False, code="UNREACHABLE", detail=f"{gateway}: {exc}",
                                   fix="Check ALIPAY_GATEWAY (https://openapi.alipay.com/gateway.do) and that "
                                       "this server reaches it.")
            return ProbeResult(ok=False, code="BAD_ANSWER", detail=f"{gateway}: {exc}",
                               fix="The gateway did not answer as Alipay does: check ALIPAY_GATEWAY.")
        found = f"{answer.code} {answer.sub_code} {answer.field('sub_msg')[:100]}".strip()
        if answer.code == "40002" or answer.sub_code.startswith(("isv.invalid-signature", "isv.invalid-app-id",
                                                                 "isv.missing-signature")):
            # A refusal of our request: read even unsigned (it grants nothing).
            if answer.sub_code.startswith("isv.invalid-app-id"):
                fix = "ALIPAY_APP_ID is not an app of this gateway: copy the app id from the Alipay console."
            else:
                fix = ("Upload the app public key that matches ALIPAY_PRIVATE_KEY in the Alipay console, "
                       "or check the app id")
            return ProbeResult(ok=False, code="AUTH_FAILED", detail=f"alipay.trade.query: {found}", fix=fix,
                               server_time=answer.server_time)
        if answer.sign_state == "INVALID":
            return ProbeResult(
                ok=False, code="AUTH_FAILED", server_time=answer.server_time,
                detail=f"alipay.trade.query answered {found}, but its sign fails with ALIPAY_PUBLIC_KEY",
                fix="ALIPAY_PUBLIC_KEY is not Alipay's public key for this app (it is not the app public key)")
        if answer.sign_state == "MISSING":
            return ProbeResult(ok=False, code="BAD_ANSWER", server_time=answer.server_time,
                               detail=f"alipay.trade.query answered {found} without a sign",
                               fix="The gateway did not answer as Alipay does: check ALIPAY_GATEWAY.")
        if (answer.code, answer.sub_code) == NOT_FOUND:
            return ProbeResult(ok=True, code="OK", detail=f"alipay.trade.query: {found}",
                               server_time=answer.server_time)
        if answer.code == "20000":
            return ProbeResult(ok=False, code="UNREACHABLE", detail=f"alipay.trade.query: {found}",
                               fix="Alipay's service is unavailable for now: try again in a few minutes.",
                               server_time=answer.server_time)
        return ProbeResult(ok=False, code="BAD_ANSWER", detail=f"alipay.trade.query: {found}",
                           fix="Alipay answered neither \"trade not found\" nor a refusal: check that the app has "
                               "the payment product signed (当面付 / 电脑网站支付 / 手机网站支付).",
                           server_time=answer.server_time)
