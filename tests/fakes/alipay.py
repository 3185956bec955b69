"""A fake 支付宝开放平台 gateway (``/gateway.do``), RSA2 both ways, written
from Alipay's documents and not from the shop's code:

- it holds Alipay's key pair (answers and notifies are signed with it) and
  makes the shop's app key pair (``app_private_pem`` for ALIPAY_PRIVATE_KEY;
  its public half is "uploaded to the console": requests are checked with it);
- ``alipay.trade.precreate`` books the trade and answers a QR code;
  ``alipay.trade.query`` answers TRADE_SUCCESS once paid, else 40004
  ACQ.TRADE_NOT_EXIST; ``alipay.trade.refund`` refunds a paid trade;
- ``alipay.trade.page.pay`` / ``wap.pay`` (the buyer's browser posts the
  shop's form) show a cashier page whose Pay button pays: the trade is booked,
  the signed notify is POSTed to the notify_url, the buyer goes back to the
  return_url;
- a request whose sign fails is answered 40002 isv.invalid-signature;
- ``down``, ``wrong_response_key``, ``unsigned`` and ``send_date`` make it misbehave.

Answers are ``{"<method>_response": {...}, "sign": "..."}``, the sign over the
exact JSON text of the object (non-ASCII left as is, as Alipay does).
"""

from __future__ import annotations

import base64
import functools
import html
import json
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.base import FakeGateway, Reply, Request

BEIJING = ZoneInfo("Asia/Shanghai")
TIMESTAMP_SKEW = timedelta(minutes=15)


def rsa_key_new() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Alipay's pair, the app's pair and a stranger's, made once per test run (2048-bit keys take a while)."""
    return rsa_key_new(), rsa_key_new(), rsa_key_new()


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_base64(key: rsa.RSAPrivateKey) -> str:
    """The public key as the Alipay console shows it: bare base64 of the DER."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def rsa2_sign(text: str, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_valid(text: str, sign: str, key: rsa.RSAPublicKey) -> bool:
    try:
        key.verify(base64.b64decode(sign), text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def request_content(params: dict) -> str:
    """What the merchant signs (the open platform's 请求参数签名): every parameter but
    ``sign`` with a non-empty value, sorted, ``k=v`` joined with ``&``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


def notify_content(params: dict) -> str:
    """What Alipay signs in a notify (异步通知验签): every parameter but ``sign`` and ``sign_type``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type"))


class FakeAlipay(FakeGateway):
    def __init__(self, *, app_id: str = "2021000000000001", seller_id: str = "2088000000000001"):
        self.app_id, self.seller_id = app_id, seller_id
        # Alipay's own pair; the shop's app pair (its public half "uploaded to
        # the console"); a key that is neither (wrong_response_key, forgeries).
        self.alipay_key, self.app_key, self.other_key = _keys()
        self.app_public_key = self.app_key.public_key()  # what requests are checked with
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Forget every order, trade and request, and behave again (one server for many tests)."""
        self.down = False
        self.wrong_response_key = False  # sign answers with a key that is not Alipay's
        self.unsigned = False  # answer without a sign
        self.send_date: str | None = None  # a Date header to send instead of the real one
        self.orders: dict[str, dict] = {}  # out_trade_no → what the shop asked (precreate / page / wap)
        self.trades: dict[str, dict] = {}  # out_trade_no → the paid trade
        self.refunds: list[dict] = []
        self.calls: list[dict] = []  # every API request's parameters, as received
        self.notify_replies: list[tuple[int, str]] = []
        self.requests.clear()

    # --- what a test configures the shop with ----------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"{self.url}/gateway.do"

    @property
    def app_private_pem(self) -> str:
        return private_pem(self.app_key)

    @property
    def alipay_public_pem(self) -> str:
        return public_pem(self.alipay_key)

    @property
    def alipay_public_base64(self) -> str:
        return public_base64(self.alipay_key)

    @property
    def app_public_pem(self) -> str:
        return public_pem(self.app_key)

    # --- the gateway ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.path == "/gateway.do":
            params = {**request.query, **request.form}
            self.calls.append(params)
            return self._gateway(params)
        if request.path == "/pay":
            return self._pay_clicked(request.form)
        return Reply(404, "not found")

    def _gateway(self, params: dict) -> Reply:
        method = params.get("method", "")
        web = method in ("alipay.trade.page.pay", "alipay.trade.wap.pay")
        refused = self._request_refusal(params)
        if refused:
            code, sub_code, sub_msg = refused
            if web:
                return self._page(f"<h1>错误代码 {html.escape(sub_code)}</h1><p>{html.escape(sub_msg)}</p>")
            return self._answer(method or "error", {"code": code, "msg": "Invalid Arguments", "sub_code": sub_code,
                                                    "sub_msg": sub_msg})
        biz = json.loads(params["biz_content"])
        if web:
            return self._cashier(params, biz)
        handler = {
            "alipay.trade.precreate": self._precreate,
            "alipay.trade.query": self._query,
            "alipay.trade.refund": self._refund,
        }.get(method)
        if handler is None:
            return self._answer("error", {"code": "40002", "msg": "Invalid Arguments",
                                          "sub_code": "isv.invalid-method", "sub_msg": "不存在的方法名"})
        return self._answer(method, handler(params, biz))

    def _request_refusal(self, params: dict) -> tuple[str, str, str] | None:
        for name in ("app_id", "method", "charset", "sign_type", "sign", "timestamp", "version", "biz_content"):
            if not params.get(name):
                return "40001", f"isv.missing-{name.replace('_', '-')}", f"缺少参数 {name}"
        if params["app_id"] != self.app_id:
            return "40002", "isv.invalid-app-id", "无效的AppID参数"
        if params["sign_type"] != "RSA2" or params["charset"] != "utf-8" or params.get("format", "JSON") != "JSON":
            return "40002", "isv.invalid-parameter", "参数无效"
        if not rsa2_valid(request_content(params), params["sign"], self.app_public_key):
            return "40002", "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配"
        try:
            sent = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError:
            return "40002", "isv.invalid-timestamp", "非法的时间戳参数"
        if abs(datetime.now(BEIJING) - sent) > TIMESTAMP_SKEW:
            return "40002", "isv.invalid-timestamp", "非法的时间戳参数"
        try:
            biz = json.loads(params["biz_content"])
        except ValueError:
            return "40002", "isv.invalid-parameter", "biz_content 不是 JSON"
        if not isinstance(biz, dict) or not biz.get("out_trade_no"):
            return "40002", "isv.invalid-parameter", "缺少 out_trade_no"
        return None

    def _answer(self, method: str, body: dict) -> Reply:
        name = method.replace(".", "_") + "_response"
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(raw, self.other_key if self.wrong_response_key else self.alipay_key)
        text = '{"' + name + '":' + raw + ('}' if self.unsigned else ',"sign":"' + sign + '"}')
        return Reply(200, text.encode("utf-8"), headers=self._date(), content_type="text/html;charset=utf-8")

    def _date(self) -> dict:
        return {"Date": self.send_date} if self.send_date else {}

    def _order_book(self, params: dict, biz: dict) -> dict:
        order = self.orders.get(biz["out_trade_no"]) or {"qr_code": f"https://qr.alipay.com/bax0{len(self.orders) + 1}"}
        order.update(total_amount=biz["total_amount"], subject=biz.get("subject", ""),
                     notify_url=params.get("notify_url", ""), return_url=params.get("return_url", ""),
                     method=params["method"], product_code=biz.get("product_code", ""))
        self.orders[biz["out_trade_no"]] = order
        return order

    def _precreate(self, params: dict, biz: dict) -> dict:
        if biz["out_trade_no"] in self.trades:
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_HAS_SUCCESS",
                    "sub_msg": "交易已被支付"}
        order = self._order_book(params, biz)
        return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"], "qr_code": order["qr_code"]}

    def _query(self, params: dict, biz: dict) -> dict:
        trade = self.trades.get(biz["out_trade_no"])
        if trade is None:
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                    "sub_msg": "交易不存在", "out_trade_no": biz["out_trade_no"]}
        return {"code": "10000", "msg": "Success", "buyer_logon_id": "159****5620", "buyer_pay_amount":
                trade["total_amount"], "out_trade_no": biz["out_trade_no"], "receipt_amount": trade["total_amount"],
                "send_pay_date": trade["gmt_payment"], "total_amount": trade["total_amount"],
                "trade_no": trade["trade_no"], "trade_status": trade["trade_status"], "buyer_user_id": "2088102122524333"}

    def _refund(self, params: dict, biz: dict) -> dict:
        trade = self.trades.get(biz["out_trade_no"])
        if trade is None:
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
        request_no = biz.get("out_request_no") or biz["out_trade_no"]
        answer = {"code": "10000", "msg": "Success", "buyer_logon_id": "159****5620", "out_trade_no":
                  biz["out_trade_no"], "trade_no": trade["trade_no"]}
        if any(r["out_request_no"] == request_no and r["out_trade_no"] == biz["out_trade_no"] for r in self.refunds):
            return {**answer, "fund_change": "N", "refund_fee": trade["refund_fee"]}  # asked again: refunded once
        amount = Decimal(biz.get("refund_amount", "0"))
        if amount <= 0 or amount + Decimal(trade["refund_fee"]) > Decimal(trade["total_amount"]):
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                    "sub_msg": "退款金额超限"}
        trade["refund_fee"] = f"{amount + Decimal(trade['refund_fee']):.2f}"
        if trade["refund_fee"] == trade["total_amount"]:
            trade["trade_status"] = "TRADE_CLOSED"
        self.refunds.append({"out_trade_no": biz["out_trade_no"], "out_request_no": request_no,
                             "refund_amount": f"{amount:.2f}"})
        return {**answer, "fund_change": "Y", "refund_fee": trade["refund_fee"]}

    # --- the cashier (page / wap) -------------------------------------------------------

    def _page(self, body: str) -> Reply:
        return Reply(200, f"<html><body>{body}</body></html>", headers=self._date(),
                     content_type="text/html; charset=utf-8")

    def _cashier(self, params: dict, biz: dict) -> Reply:
        expected = {"alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY", "alipay.trade.wap.pay": "QUICK_WAP_WAY"}
        if biz.get("product_code") != expected[params["method"]]:
            return self._page("<h1>错误代码 isv.invalid-parameter</h1><p>product_code</p>")
        order = self._order_book(params, biz)
        return self._page(
            f"<h1>支付宝 收银台</h1><p id='subject'>{html.escape(order['subject'])}</p>"
            f"<p id='amount'>{html.escape(order['total_amount'])}</p>"
            f"<form method='post' action='/pay'><input type='hidden' name='out_trade_no' "
            f"value='{html.escape(biz['out_trade_no'])}'><button id='pay'>Pay</button></form>"
        )

    def _pay_clicked(self, form: dict) -> Reply:
        out_trade_no = form["out_trade_no"]
        self.pay(out_trade_no)
        return Reply(302, b"", headers={"Location": self.orders[out_trade_no]["return_url"]})

    # --- what the buyer and Alipay do -------------------------------------------------

    def book(self, out_trade_no: str, *, total_amount: str | None = None, trade_no: str = "") -> dict:
        """The buyer paid (scanned the QR code, or pressed Pay): the trade is
        booked as TRADE_SUCCESS; no notify is sent. The amount is the one the
        shop asked for unless given."""
        order = self.orders.get(out_trade_no, {})
        amount = total_amount or order["total_amount"]
        n = len(self.trades) + 1
        trade = {
            "trade_no": trade_no or f"2026010122001{n:015d}", "total_amount": f"{Decimal(amount):.2f}",
            "trade_status": "TRADE_SUCCESS", "refund_fee": "0.00", "subject": order.get("subject", "goods"),
            "gmt_create": "2026-01-01 12:00:00", "gmt_payment": "2026-01-01 12:00:05",
        }
        self.trades[out_trade_no] = trade
        return trade

    def pay(self, out_trade_no: str, *, total_amount: str | None = None, notify_url: str = "") -> tuple[int, str]:
        """The buyer scanned and paid: book the trade and POST the signed
        notify to the notify_url the shop sent (or ``notify_url``); returns
        the shop's answer (status, body)."""
        self.book(out_trade_no, total_amount=total_amount)
        return self.notify(self.notice(out_trade_no), notify_url=notify_url or self.orders[out_trade_no]["notify_url"])

    def notify(self, params: dict, *, notify_url: str) -> tuple[int, str]:
        reply = self.post(notify_url, form=params)
        self.notify_replies.append(reply)
        return reply

    def notice(self, out_trade_no: str, *, key: rsa.RSAPrivateKey | None = None, **override) -> dict:
        """The signed notify (trade_status_sync) of a booked trade, not sent.
        ``override`` changes or adds fields before signing; ``key`` signs with
        another key (a forgery)."""
        trade = self.trades[out_trade_no]
        params = {
            "gmt_create": trade["gmt_create"], "charset": "utf-8", "seller_email": "shop@example.com",
            "subject": trade["subject"], "buyer_id": "2088102122524333", "invoice_amount": trade["total_amount"],
            "notify_id": f"2026010100222120005{len(self.notify_replies):013d}", "fund_bill_list":
            json.dumps([{"amount": trade["total_amount"], "fundChannel": "ALIPAYACCOUNT"}]),
            "notify_type": "trade_status_sync", "trade_status": trade["trade_status"],
            "receipt_amount": trade["total_amount"], "app_id": self.app_id, "buyer_pay_amount":
            trade["total_amount"], "seller_id": self.seller_id, "gmt_payment": trade["gmt_payment"],
            "notify_time": "2026-01-01 12:00:06", "version": "1.0", "out_trade_no": out_trade_no,
            "total_amount": trade["total_amount"], "trade_no": trade["trade_no"], "auth_app_id": self.app_id,
            "buyer_logon_id": "159****5620", "point_amount": "0.00", **override,
        }
        params = {k: v for k, v in params.items() if v is not None}  # override=None drops a field
        params["sign"] = rsa2_sign(notify_content(params), key or self.alipay_key)
        params["sign_type"] = "RSA2"
        return params

    def refund_notice(self, out_trade_no: str, *, refund_fee: str | None = None, out_biz_no: str = "",
                      gmt_refund: str = "2026-01-02 09:00:00.123", **override) -> dict:
        """The trade_status_sync Alipay sends after a refund (ours or the
        console's): the amount refunded so far, and the refund's request number."""
        trade = self.trades[out_trade_no]
        refunded = refund_fee or (trade["refund_fee"] if trade["refund_fee"] != "0.00" else trade["total_amount"])
        closed = Decimal(refunded) >= Decimal(trade["total_amount"])
        return self.notice(out_trade_no, refund_fee=refunded, gmt_refund=gmt_refund,
                           out_biz_no=out_biz_no or f"refund-{out_trade_no}",
                           trade_status="TRADE_CLOSED" if closed else "TRADE_SUCCESS", **override)
