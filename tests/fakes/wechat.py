"""A fake 微信支付 (WeChat Pay API v3) on loopback: Native order creation,
the order query and domestic refunds, each checking the shop's
``WECHATPAY2-SHA256-RSA2048`` Authorization with the merchant's public key
(401 SIGN_ERROR otherwise) and answering signed with its platform key; and
the notify it sends when a buyer pays: the trade encrypted under the APIv3
key (AEAD_AES_256_GCM), the envelope signed with the platform key.

Written from WeChat Pay's v3 documents with ``cryptography``, apart from the
shop's code (``payments.providers.wechat`` is not imported), so a mistake
there is not mirrored here.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes.base import FakeGateway, Reply, Request

PLATFORM_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
TOLERANCE = 300


@functools.cache
def rsa_key(slot: str) -> rsa.RSAPrivateKey:
    """A 2048-bit key per slot, made once per test run (making one takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def rsa_sha256(key: rsa.RSAPrivateKey, text: bytes) -> str:
    return base64.b64encode(key.sign(text, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_sha256_valid(public_key, text: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), text, padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001 - any failure is "not signed by that key"
        return False
    return True


def authorization_parse(header: str) -> dict | None:
    """``WECHATPAY2-SHA256-RSA2048 k="v",…`` as a dict, or None."""
    scheme, _, rest = (header or "").partition(" ")
    if scheme != AUTH_SCHEME:
        return None
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


class FakeWechatPay(FakeGateway):
    def __init__(self, *, mchid: str = "1900009191", appid: str = "wxd678efh567hg6787",
                 apiv3_key: str = "0123456789abcdefABCDEF0123456789", wrong_platform_key: bool = False):
        self.mchid, self.appid, self.apiv3_key = mchid, appid, apiv3_key
        self.platform_key = rsa_key("platform")
        self.platform_public_pem = public_pem(self.platform_key)
        self.platform_key_id = PLATFORM_KEY_ID
        self.merchant_key = rsa_key("merchant")  # the shop's API key pair (apiclient_key.pem)
        self.merchant_private_pem = private_pem(self.merchant_key)
        self.merchant_serial = MERCHANT_SERIAL
        self.other_key = rsa_key("other")  # a key nobody configured
        self.wrong_platform_key = wrong_platform_key
        self.answer_age = 0  # seconds to backdate the answers' Wechatpay-Timestamp
        self.refund_error: tuple[int, str] | None = None  # (HTTP status, code) for the next refunds
        self.refund_status = "PROCESSING"
        self.orders: dict[str, dict] = {}  # out_trade_no → the native order as the shop sent it
        self.trades: dict[str, dict] = {}  # out_trade_no → the paid transaction (the resource of the notify)
        self.refunds: dict[str, dict] = {}  # out_refund_no → the refund as booked
        self.verified: list[dict] = []  # the Authorization fields of every request that passed the check
        self.notify_replies: list[tuple[int, str]] = []
        self._raw = threading.local()
        super().__init__()
        fake, handler = self, self.server.RequestHandlerClass

        class RawPath(handler):
            """Keeps the request line's path as sent: the signature covers it, not a re-encoding."""

            def _serve(self):
                fake._raw.path = self.path
                super()._serve()

            do_GET = do_POST = _serve

        self.server.RequestHandlerClass = RawPath

    # --- the API -------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        auth = self._authorization_check(request)
        if auth is None:
            return self._answer(401, {"code": "SIGN_ERROR", "message": "签名错误"})
        self.verified.append(auth)
        if request.method == "POST" and request.path == "/v3/pay/transactions/native":
            return self._native(request.json())
        prefix = "/v3/pay/transactions/out-trade-no/"
        if request.method == "GET" and request.path.startswith(prefix):
            return self._query(urllib.parse.unquote(request.path[len(prefix):]), request.query)
        if request.method == "POST" and request.path == "/v3/refund/domestic/refunds":
            return self._refund(request.json())
        return self._answer(404, {"code": "NOT_FOUND", "message": "no such API"})

    def _authorization_check(self, request: Request) -> dict | None:
        auth = authorization_parse(request.headers.get("authorization", ""))
        if not auth or auth.get("mchid") != self.mchid or auth.get("serial_no") != self.merchant_serial:
            return None
        timestamp = auth.get("timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE:
            return None
        text = (f"{request.method}\n{self._raw.path}\n{timestamp}\n{auth.get('nonce_str', '')}\n".encode()
                + request.body + b"\n")
        if not rsa_sha256_valid(self.merchant_key.public_key(), text, auth.get("signature", "")):
            return None
        return auth

    def _answer(self, status: int, body: dict | None) -> Reply:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        timestamp, nonce = str(int(time.time()) - self.answer_age), secrets.token_hex(16).upper()
        key = self.other_key if self.wrong_platform_key else self.platform_key
        reply = Reply(status, data, content_type="application/json" if data else "", headers={
            "Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.platform_key_id,
            "Wechatpay-Signature": rsa_sha256(key, f"{timestamp}\n{nonce}\n".encode() + data + b"\n"),
            "Wechatpay-Signature-Type": AUTH_SCHEME,
            "Request-ID": str(uuid.uuid4()), "Date": email.utils.formatdate(usegmt=True),
        })
        return reply

    def _native(self, body: dict) -> Reply:
        if body.get("mchid") != self.mchid or body.get("appid") != self.appid:
            return self._answer(400, {"code": "APPID_MCHID_NOT_MATCH", "message": "appid和mch_id不匹配"})
        total = (body.get("amount") or {}).get("total")
        if not isinstance(total, int) or total <= 0 or not body.get("description") or not body.get("notify_url"):
            return self._answer(400, {"code": "PARAM_ERROR", "message": "参数错误"})
        if body["out_trade_no"] in self.trades:
            return self._answer(400, {"code": "ORDERPAID", "message": "该订单已支付"})
        self.orders[body["out_trade_no"]] = body
        return self._answer(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={len(self.orders):07d}"})

    def _query(self, out_trade_no: str, query: dict) -> Reply:
        if query.get("mchid") != self.mchid:
            return self._answer(400, {"code": "MCH_NOT_EXISTS", "message": "商户号不存在"})
        if out_trade_no in self.trades:
            return self._answer(200, self.trades[out_trade_no])
        if out_trade_no in self.orders:  # opened, not paid
            order = self.orders[out_trade_no]
            return self._answer(200, {"appid": self.appid, "mchid": self.mchid, "out_trade_no": out_trade_no,
                                      "trade_state": "NOTPAY", "trade_state_desc": "订单未支付",
                                      "amount": {"payer_currency": "CNY", "total": order["amount"]["total"]}})
        return self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})

    def _refund(self, body: dict) -> Reply:
        if self.refund_error:
            status, code = self.refund_error
            return self._answer(status, {"code": code, "message": code})
        trade = self.trades.get(body.get("out_trade_no", ""))
        if trade is None:
            return self._answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"})
        amount = body.get("amount") or {}
        if amount.get("total") != trade["amount"]["total"] or not 0 < amount.get("refund", 0) <= amount["total"]:
            return self._answer(400, {"code": "PARAM_ERROR", "message": "退款金额不正确"})
        out_refund_no = body["out_refund_no"]
        refund = self.refunds.setdefault(out_refund_no, {
            "refund_id": f"50300{len(self.refunds) + 1:027d}", "out_refund_no": out_refund_no,
            "transaction_id": trade["transaction_id"], "out_trade_no": trade["out_trade_no"],
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "status": self.refund_status,
            "create_time": self._now_iso(),
            "amount": {"total": amount["total"], "refund": amount["refund"], "payer_total": amount["total"],
                       "payer_refund": amount["refund"], "currency": "CNY"},
        })
        return self._answer(200, refund)

    # --- the buyer, and the notify ----------------------------------------------------

    def book(self, out_trade_no: str, *, total: int | None = None, transaction_id: str = "") -> dict:
        """The buyer scanned and paid: the trade as WeChat records it (once)."""
        if out_trade_no not in self.trades:
            order = self.orders.get(out_trade_no, {})
            total = total if total is not None else order["amount"]["total"]
            self.trades[out_trade_no] = {
                "appid": self.appid, "mchid": self.mchid, "out_trade_no": out_trade_no,
                "transaction_id": transaction_id or f"42000{len(self.trades) + 1:023d}",
                "trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                "bank_type": "OTHERS", "attach": "", "success_time": self._now_iso(),
                "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
                "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
            }
        return self.trades[out_trade_no]

    def pay(self, out_trade_no: str, *, notify: bool = True, **book) -> tuple[int, str] | None:
        """The buyer scanned and paid: book the trade and send the notify to
        the notify_url the order was opened with; the shop's (status, body)."""
        self.book(out_trade_no, **book)
        if not notify:
            return None
        body = self.notify_body(out_trade_no)
        reply = self.send(body, self.notify_headers(body), url=self.orders[out_trade_no]["notify_url"])
        self.notify_replies.append(reply)
        return reply

    def transaction(self, out_trade_no: str, **override) -> dict:
        """The decrypted resource of a TRANSACTION.SUCCESS notify, as booked, with overrides."""
        trade = json.loads(json.dumps(self.trades[out_trade_no]))
        if "total" in override:
            total = override.pop("total")
            trade["amount"].update(total=total, payer_total=total)
        trade.update(override)
        return trade

    def notify_body(self, out_trade_no: str | None = None, *, event_type: str = "TRANSACTION.SUCCESS",
                    resource: dict | None = None, apiv3_key: str | None = None, **override) -> bytes:
        """A notify's body: ``resource`` (default: the booked trade with
        ``override``, e.g. total=…, trade_state=…, mchid=…) encrypted with
        ``apiv3_key`` (default: the merchant's)."""
        if resource is None:
            resource = self.transaction(out_trade_no, **override)
        kind = "refund" if event_type.startswith("REFUND.") else "transaction"
        nonce = secrets.token_hex(6)  # 12 characters
        ciphertext = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(
            nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), kind.encode())
        envelope = {
            "id": str(uuid.uuid4()), "create_time": self._now_iso(), "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": "退款成功" if kind == "refund" else "支付成功",
            "resource": {"original_type": kind, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": kind,
                         "nonce": nonce},
        }
        return json.dumps(envelope, ensure_ascii=False).encode()

    def refund_notify(self, out_trade_no: str, *, refund: int | None = None, refund_id: str = "",
                      refund_status: str = "SUCCESS", event_type: str = "REFUND.SUCCESS", **notify) -> bytes:
        """The body of a REFUND.SUCCESS notify for a booked trade (refunded in full by default)."""
        trade = self.trades[out_trade_no]
        total = trade["amount"]["total"]
        refund = total if refund is None else refund
        return self.notify_body(event_type=event_type, resource={
            "mchid": self.mchid, "out_trade_no": out_trade_no, "transaction_id": trade["transaction_id"],
            "out_refund_no": f"dashboard-{out_trade_no}",
            "refund_id": refund_id or f"50300{len(self.refunds) + 9:027d}",
            "refund_status": refund_status, "success_time": self._now_iso(),
            "user_received_account": "支付用户零钱",
            "amount": {"total": total, "refund": refund, "payer_total": total, "payer_refund": refund},
        }, **notify)

    def notify_headers(self, body: bytes, *, timestamp: int | None = None, key: rsa.RSAPrivateKey | None = None,
                       serial: str | None = None, nonce: str | None = None) -> dict:
        """The Wechatpay-* headers over ``body``, signed with ``key`` (default:
        the platform key) at ``timestamp`` (default: now)."""
        timestamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(16).upper()
        signature = rsa_sha256(key or self.platform_key, f"{timestamp}\n{nonce}\n".encode() + body + b"\n")
        return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
                "Wechatpay-Serial": self.platform_key_id if serial is None else serial,
                "Wechatpay-Signature-Type": AUTH_SCHEME, "Content-Type": "application/json"}

    def send(self, body: bytes, headers: dict, *, url: str) -> tuple[int, str]:
        """POST a notify to the shop: its (status, body)."""
        return self.post(url, body=body, headers=headers)

    @staticmethod
    def _now_iso() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600))
