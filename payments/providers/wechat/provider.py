"""The WeChat Pay plug-in: Native checkout, the notify, refunds, the order query and the probe."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from django.conf import settings
from django.http import HttpResponse

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
from payments.providers.http import HttpAnswer, http_call, rsa_private_key_load, rsa_public_key_load
from payments.providers.wechat.payloads import _dict, _evidence, _json, _same, _str, wechat_amount, wechat_fen
from payments.providers.wechat.signing import (
    SCHEME,
    wechat_answer_message,
    wechat_authorization,
    wechat_decrypt,
    wechat_signature_valid,
)

logger = logging.getLogger(__package__)  # the module's name before the split: log filters and tests name it

CURRENCY = "CNY"  # Native pays in yuan only
CLOCK_TOLERANCE = 300  # seconds either way, for answers and notifies alike
USER_AGENT = "Kamidrop (WeChat Pay API v3; python)"
NATIVE_PATH = "/v3/pay/transactions/native"
QUERY_PATH = "/v3/pay/transactions/out-trade-no/{out_trade_no}"
REFUND_PATH = "/v3/refund/domestic/refunds"
PROBE_TRADE = "KDPROBE0000000000"
PAID_EVENT = "TRANSACTION.SUCCESS"
REFUND_EVENT = "REFUND.SUCCESS"
SUCCESS_STATE = "SUCCESS"
# Order query trade states that say "not paid" (PAYERROR and REVOKED are
# final failures; REFUND, a paid-then-refunded trade, is not among them).
UNPAID_STATES = ("NOTPAY", "CLOSED", "USERPAYING", "PAYERROR", "REVOKED")
# Error codes that mean the merchant (mchid, appid, its API rights) is wrong.
MERCHANT_ERRORS = ("MCH_NOT_EXISTS", "APPID_MCHID_NOT_MATCH", "NO_AUTH", "INVALID_REQUEST_MCH")
DESCRIPTION_BYTES = 127
_CODE = re.compile(r"^[A-Z0-9_]{1,40}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class WechatPayProvider(PaymentProvider):
    plugin = "wechat"
    required_secrets = ("private_key", "apiv3_key", "platform_public_key")
    required_settings = ("merchant_id", "app_id", "key_serial", "gateway")
    can_query = True

    # --- keys -------------------------------------------------------------------

    def _private_key(self) -> RSAPrivateKey:
        try:
            return rsa_private_key_load(self.config.secret("private_key"))
        except Exception:  # noqa: BLE001 - ValueError, TypeError, UnsupportedAlgorithm: never the key's text
            raise ProviderUnreachable("KEY_INVALID", "the merchant private key does not load") from None

    def _platform_key(self) -> RSAPublicKey | None:
        try:
            return rsa_public_key_load(self.config.secret("platform_public_key"))
        except Exception:  # noqa: BLE001
            return None

    # --- talking to WeChat ----------------------------------------------------------

    def _request(self, method: str, path: str, payload: dict | None = None) -> HttpAnswer:
        """One signed call; the answer is not verified yet (``_verified``).
        Raises ProviderUnreachable (KEY_INVALID, GATEWAY_UNREACHABLE)."""
        key = self._private_key()
        url = self.config.gateway.rstrip("/") + path
        parts = urllib.parse.urlsplit(url)
        signed_path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Authorization": wechat_authorization(private_key=key, mchid=self.config.merchant_id,
                                                  serial=self.config.key_serial, method=method,
                                                  path=signed_path, body=body),
        }
        answer = http_call(method, url, body=body if payload is not None else None, headers=headers)
        logger.debug("wechat %s %s %s → %s", self.id, method, parts.path, answer.status)
        return answer

    def _signature_check(self, *, timestamp: str, nonce: str, signature: str, serial: str, body: bytes) -> str:
        """"" when WeChat's signature over ``body`` holds, else why not:
        MISSING, INVALID (key, serial, signature) or STALE."""
        if not (timestamp and nonce and signature and serial):
            return "MISSING"
        key = self._platform_key()
        if key is None:
            return "INVALID"
        if self.config.platform_key_id and not _same(serial, self.config.platform_key_id):
            return "INVALID"
        if not _TIMESTAMP.match(timestamp):
            return "INVALID"
        if not wechat_signature_valid(key, wechat_answer_message(timestamp, nonce, body), signature):
            return "INVALID"
        if abs(time.time() - int(timestamp)) > CLOCK_TOLERANCE:
            return "STALE"
        return ""

    def _verified(self, answer: HttpAnswer) -> dict:
        """The answer's JSON once its signature holds; raises ProviderUnreachable."""
        failure = self._signature_check(
            timestamp=answer.header("Wechatpay-Timestamp"), nonce=answer.header("Wechatpay-Nonce"),
            signature=answer.header("Wechatpay-Signature"), serial=answer.header("Wechatpay-Serial"),
            body=answer.body,
        )
        if failure:
            logger.warning("wechat %s answer not verified: %s", self.id, failure)
            code = "SIGNATURE_INVALID" if failure == "INVALID" else "BAD_ANSWER"
            raise ProviderUnreachable(code, f"the answer's signature is {failure.lower()}")
        try:
            data = _json(answer.body) if answer.body else {}
        except ValueError:
            raise ProviderUnreachable("BAD_ANSWER", "the answer is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderUnreachable("BAD_ANSWER", "the answer is not a JSON object")
        return data

    @staticmethod
    def _error_code(answer: HttpAnswer) -> str:
        """WeChat's error code of an answer ({"code": "SIGN_ERROR", "message": …})."""
        try:
            code = _json(answer.body).get("code")
        except (ValueError, AttributeError):
            code = None
        return code if isinstance(code, str) and _CODE.match(code) else f"HTTP_{answer.status}"

    def _query_path(self, out_trade_no: str) -> str:
        return (QUERY_PATH.format(out_trade_no=urllib.parse.quote(out_trade_no, safe=""))
                + "?" + urllib.parse.urlencode({"mchid": self.config.merchant_id}))

    # --- the plug-in ----------------------------------------------------------------

    def start(self, *, payment) -> PayAction:
        if payment.currency != CURRENCY:
            raise ProviderUnreachable("CURRENCY_UNSUPPORTED", f"WeChat Pay Native takes {CURRENCY} only")
        order = payment.order
        line = order.lines.select_related("product").order_by("id").first()
        name = (str(line.product) if line else settings.SHOP_NAME) or settings.SHOP_NAME
        # At most 127 bytes of UTF-8, cut on a character boundary.
        description = name.encode()[:DESCRIPTION_BYTES].decode("utf-8", "ignore")
        answer = self._request("POST", NATIVE_PATH, {
            "appid": self.config.app_id,
            "mchid": self.config.merchant_id,
            "description": description,
            "out_trade_no": payment.reference,
            "notify_url": self.notify_url(),
            "amount": {"total": wechat_fen(payment.amount), "currency": CURRENCY},
        })
        if answer.status != 200:
            code = self._error_code(answer)
            logger.warning("wechat %s native order for %s refused: %s", self.id, payment.reference, code)
            raise ProviderUnreachable(code, f"WeChat Pay answered HTTP {answer.status}")
        code_url = _str(self._verified(answer).get("code_url"))
        if not code_url.startswith("weixin://") or len(code_url) > 512:
            raise ProviderUnreachable("BAD_ANSWER", "the answer has no weixin:// code_url")
        # A weixin:// code can only be scanned: no app link to offer.
        return PayAction(kind=PayActionKind.QR, qr=code_url)

    def parse_callback(self, request) -> CallbackNotice | None:
        body = request.body
        meta = request.META
        failure = self._signature_check(
            timestamp=meta.get("HTTP_WECHATPAY_TIMESTAMP", ""), nonce=meta.get("HTTP_WECHATPAY_NONCE", ""),
            signature=meta.get("HTTP_WECHATPAY_SIGNATURE", ""), serial=meta.get("HTTP_WECHATPAY_SERIAL", ""),
            body=body,
        )
        if failure == "MISSING":
            raise CallbackRejected("SIGNATURE_MISSING")
        if failure == "STALE":
            raise CallbackRejected("TIMESTAMP_STALE")
        if failure or meta.get("HTTP_WECHATPAY_SIGNATURE_TYPE", SCHEME) != SCHEME:
            raise CallbackRejected("SIGNATURE_INVALID")
        # Authentic from here on: the checks below are about what it says.
        try:
            envelope = _json(body)
        except ValueError:
            raise CallbackRejected("PAYLOAD_INVALID") from None
        envelope = _dict(envelope)
        event_type = _str(envelope.get("event_type"))
        if event_type not in (PAID_EVENT, REFUND_EVENT):
            return None  # an event we do not act on: acknowledged
        plain = wechat_decrypt(self.config.secret("apiv3_key"), _dict(envelope.get("resource")))
        try:
            data = _dict(_json(plain))
        except ValueError:
            raise CallbackRejected("PAYLOAD_INVALID", "the resource is not JSON") from None
        if not _same(data.get("mchid"), self.config.merchant_id):
            raise CallbackRejected("MERCHANT_MISMATCH")
        # The decrypted resource is the evidence; the envelope says when and what.
        event = {k: _evidence(v) for k, v in envelope.items() if k != "resource" and isinstance(v, str)}
        if event_type == PAID_EVENT:
            return self._paid_notice(event=event, transaction=data)
        return self._refund_notice(event=event, refund=data)

    def _paid_notice(self, *, event: dict, transaction: dict) -> CallbackNotice:
        if not _same(transaction.get("appid"), self.config.app_id):
            raise CallbackRejected("MERCHANT_MISMATCH")
        transaction_id = text_field(transaction, "transaction_id", max_length=32)
        state = text_field(transaction, "trade_state", max_length=32)
        amount = _dict(transaction.get("amount"))
        currency = _str(amount.get("currency"))
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise CallbackRejected("PAYLOAD_INVALID", "currency missing")
        succeeded = state == SUCCESS_STATE
        return CallbackNotice(
            # A state other than success must not take the success's
            # idempotency key, or the success would be answered as a duplicate.
            external_id=transaction_id if succeeded else f"{transaction_id}#{state}",
            transaction_id=transaction_id,
            reference=text_field(transaction, "out_trade_no", max_length=40),
            amount=wechat_amount(amount.get("total")),
            currency=currency,
            succeeded=succeeded,
            payload={"event": event, "transaction": _evidence(transaction)},
            verification=f"{SCHEME} valid",
        )

    def _refund_notice(self, *, event: dict, refund: dict) -> CallbackNotice:
        amount = _dict(refund.get("amount"))
        return CallbackNotice(
            external_id=text_field(refund, "refund_id", max_length=32),
            transaction_id=text_field(refund, "transaction_id", max_length=32),
            reference=text_field(refund, "out_trade_no", max_length=40),
            amount=wechat_amount(amount.get("refund")),
            currency=CURRENCY,
            succeeded=refund.get("refund_status") == SUCCESS_STATE,
            kind=NoticeKind.REFUND,
            payload={"event": event, "refund": _evidence(refund)},
            verification=f"{SCHEME} valid",
        )

    def reply_accepted(self) -> HttpResponse:
        return HttpResponse(status=204)

    def reply_rejected(self, code: str) -> HttpResponse:
        # Anything but 200/204 makes WeChat retry; the code is for our logs.
        return HttpResponse(json.dumps({"code": "FAIL", "message": code}), status=400,
                            content_type="application/json")

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        if payment.currency != CURRENCY:
            raise RefundFailed("CURRENCY_UNSUPPORTED", f"WeChat Pay refunds {CURRENCY} only")
        try:
            answer = self._request("POST", REFUND_PATH, {
                "out_trade_no": payment.reference,
                # One refund per payment: a retry with the same number is the same refund at WeChat.
                "out_refund_no": f"refund-{payment.reference}",
                "amount": {"refund": wechat_fen(amount), "total": wechat_fen(payment.amount), "currency": CURRENCY},
            })
            if answer.status != 200:
                raise RefundFailed(self._error_code(answer), f"WeChat Pay answered HTTP {answer.status}")
            data = self._verified(answer)
        except ProviderUnreachable as exc:
            raise RefundFailed(exc.code, str(exc)) from None
        status = _str(data.get("status"))
        if status not in ("SUCCESS", "PROCESSING"):
            raise RefundFailed(f"WECHAT_REFUND_{status[:20] or 'UNKNOWN'}")
        try:
            refund_id = text_field(data, "refund_id", max_length=64)
        except CallbackRejected:
            raise RefundFailed("BAD_ANSWER", "the answer has no refund_id") from None
        return RefundResult(status=RefundResult.SUCCEEDED, external_id=refund_id)

    def query(self, *, payment) -> CallbackNotice | None:
        """The order query: WeChat's record of the trade."""
        answer = self._request("GET", self._query_path(payment.reference))
        if answer.status == 404:
            self._verified(answer)
            if self._error_code(answer) == "ORDER_NOT_EXIST":
                return None
            raise ProviderUnreachable("BAD_ANSWER", "HTTP 404 without ORDER_NOT_EXIST")
        if answer.status != 200:
            code = self._error_code(answer)
            logger.warning("wechat %s query for %s failed: %s", self.id, payment.reference, code)
            raise ProviderUnreachable(code, f"WeChat Pay answered HTTP {answer.status}")
        data = self._verified(answer)
        if not (_same(data.get("out_trade_no"), payment.reference) and _same(data.get("mchid"),
                                                                              self.config.merchant_id)):
            logger.warning("wechat %s query for %s answered for another trade", self.id, payment.reference)
            raise ProviderUnreachable("BAD_ANSWER", "the query answered about another trade")
        state = _str(data.get("trade_state"))
        if state in UNPAID_STATES:
            return None
        if state != SUCCESS_STATE:
            raise ProviderUnreachable("BAD_ANSWER", f"trade state {state[:32]!r}")
        amount = _dict(data.get("amount"))
        currency = _str(amount.get("currency")) or CURRENCY
        try:
            transaction_id = text_field(data, "transaction_id", max_length=32)
            total = wechat_amount(amount.get("total"))
        except CallbackRejected:
            raise ProviderUnreachable("BAD_ANSWER", "the query answered a malformed trade") from None
        if len(currency) != 3 or not currency.isalpha():
            raise ProviderUnreachable("BAD_ANSWER", "the query answered a malformed currency")
        return CallbackNotice(
            external_id=transaction_id, transaction_id=transaction_id, reference=payment.reference, amount=total,
            currency=currency, succeeded=True, payload={"transaction": _evidence(data)},
            verification="WeChat Pay order query",
        )

    def probe(self) -> ProbeResult:
        """Query an order that does not exist: signed with the merchant key,
        a good merchant gets a 404 ORDER_NOT_EXIST signed by WeChat's platform
        key; a key that does not match the serial gets 401 SIGN_ERROR."""
        gateway = self.config.gateway
        try:
            answer = self._request("GET", self._query_path(PROBE_TRADE))
        except ProviderUnreachable as exc:
            if exc.code == "KEY_INVALID":
                return ProbeResult(
                    ok=False, code="AUTH_FAILED", detail="WECHATPAY_PRIVATE_KEY does not load as an RSA private key",
                    fix="Paste apiclient_key.pem (the merchant API private key) into WECHATPAY_PRIVATE_KEY.",
                )
            return ProbeResult(ok=False, code="UNREACHABLE", detail=f"{gateway}: {exc.code}",
                               fix="Check WECHATPAY_GATEWAY (https://api.mch.weixin.qq.com) and that this server "
                                   "reaches it (firewall, proxy).")
        server_time = answer.server_time
        code = self._error_code(answer)
        if answer.status == 401 or code == "SIGN_ERROR":
            return ProbeResult(
                ok=False, code="AUTH_FAILED", detail=f"WeChat Pay refused the request signature ({code})",
                server_time=server_time,
                fix=f"The private key does not match certificate serial WECHATPAY_SERIAL "
                    f"({self.config.key_serial}) of merchant {self.config.merchant_id}: paste apiclient_key.pem into "
                    "WECHATPAY_PRIVATE_KEY and the serial of apiclient_cert.pem into WECHATPAY_SERIAL, both from "
                    "the same API certificate.",
            )
        if code in MERCHANT_ERRORS:
            return ProbeResult(
                ok=False, code="AUTH_FAILED", detail=f"WeChat Pay refused the merchant ({code})",
                server_time=server_time,
                fix="Check WECHATPAY_MCHID and WECHATPAY_APPID: the appid must be bound to this merchant.",
            )
        try:
            self._verified(answer)
        except ProviderUnreachable as exc:
            return ProbeResult(
                ok=False, code="AUTH_FAILED", detail=f"WeChat Pay's answer failed verification ({exc.code})",
                server_time=server_time,
                fix="WECHATPAY_PLATFORM_PUBLIC_KEY does not verify WeChat's answers: paste the WeChat Pay public "
                    "key (or platform certificate) from the merchant platform, and its id (PUB_KEY_ID_…, or the "
                    "certificate serial) into WECHATPAY_PLATFORM_KEY_ID; check this server's clock.",
            )
        if answer.status == 404 and code == "ORDER_NOT_EXIST":
            return ProbeResult(ok=True, code="OK", detail="WeChat Pay: order not found (signed answer verified)",
                               server_time=server_time)
        return ProbeResult(ok=False, code="BAD_ANSWER", detail=f"WeChat Pay answered HTTP {answer.status} ({code})",
                           server_time=server_time,
                           fix="WeChat Pay answered about an order that should not exist: check WECHATPAY_GATEWAY.")
