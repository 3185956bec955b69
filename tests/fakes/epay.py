"""A fake 易支付 (EPay v1) gateway: ``submit.php`` (a cashier page whose Pay
button books the trade, sends the MD5-signed notify and returns the buyer),
``api.php?act=order`` (the query), both checking the merchant's pid and key."""

from __future__ import annotations

import hashlib
import hmac
import html
import urllib.parse
from decimal import Decimal

from tests.fakes.base import FakeGateway, Reply, Request


def gateway_sign(params: dict, key: str) -> str:
    """The gateway's own MD5 sign, written from the EPay v1 document (not the shop's code)."""
    pairs = sorted((k, v) for k, v in params.items() if k not in ("sign", "sign_type") and v not in ("", None))
    return hashlib.md5(("&".join(f"{k}={v}" for k, v in pairs) + key).encode()).hexdigest()


class FakeEpay(FakeGateway):
    def __init__(self, *, pid: str = "1001", key: str = "TESTKEY123"):
        self.pid, self.key = pid, key
        self.trades: dict[str, dict] = {}  # out_trade_no → the gateway's record
        self.orders: dict[str, dict] = {}  # out_trade_no → the submit.php parameters
        self.notify_replies: list[tuple[int, str]] = []
        super().__init__()

    @property
    def submit_url(self) -> str:
        return f"{self.url}/submit.php"

    def handle(self, request: Request) -> Reply:
        if request.path == "/submit.php":
            params = request.query if request.method == "GET" else request.form
            return self._cashier(params)
        if request.path == "/pay":
            return self._pay_clicked(request.form)
        if request.path == "/api.php":
            return self._api(request.query)
        return Reply(404, "not found")

    def _cashier(self, params: dict) -> Reply:
        if params.get("pid") != self.pid or not hmac.compare_digest(gateway_sign(params, self.key),
                                                                   params.get("sign", "")):
            return Reply(200, "<h1>签名校验失败</h1>", content_type="text/html; charset=utf-8")
        self.orders[params["out_trade_no"]] = params
        page = (f"<html><body><h1>EPay cashier</h1><p id='amount'>{html.escape(params['money'])}</p>"
                f"<form method='post' action='/pay'><input type='hidden' name='out_trade_no' "
                f"value='{html.escape(params['out_trade_no'])}'><button id='pay'>Pay</button></form></body></html>")
        return Reply(200, page, content_type="text/html; charset=utf-8")

    def _pay_clicked(self, form: dict) -> Reply:
        params = self.orders[form["out_trade_no"]]
        notice = self.pay(params["out_trade_no"], money=params["money"], notify_url=params["notify_url"])
        self.notify_replies.append(self.post(params["notify_url"], form=notice, method="POST"))
        return Reply(302, b"", headers={"Location": params["return_url"]})

    def pay(self, out_trade_no: str, *, money: str, notify_url: str = "", trade_no: str = "") -> dict:
        """The buyer paid: book the trade and return the signed notify."""
        trade_no = trade_no or f"2026{len(self.trades) + 1:012d}"
        self.trades[out_trade_no] = {"trade_no": trade_no, "money": f"{Decimal(money):.2f}"}
        return self.notice(out_trade_no)

    def notice(self, out_trade_no: str, **override) -> dict:
        trade = self.trades[out_trade_no]
        params = {"pid": self.pid, "trade_no": trade["trade_no"], "out_trade_no": out_trade_no, "type": "alipay",
                  "name": "goods", "money": trade["money"], "trade_status": "TRADE_SUCCESS", **override}
        params["sign"] = gateway_sign(params, self.key)
        params["sign_type"] = "MD5"
        return params

    def _api(self, query: dict) -> Reply:
        if query.get("act") != "order":
            return Reply(200, {"code": -5, "msg": "act error"})
        if query.get("pid") != self.pid:
            return Reply(200, {"code": -3, "msg": "商户ID不存在"})
        if query.get("key") != self.key:
            return Reply(200, {"code": -3, "msg": "KEY校验失败"})
        trade = self.trades.get(query.get("out_trade_no", ""))
        if trade is None:
            return Reply(200, {"code": -1, "msg": "订单号不存在"})
        return Reply(200, {"code": 1, "msg": "查询订单号成功！", "trade_no": trade["trade_no"],
                           "out_trade_no": query["out_trade_no"], "type": "alipay", "pid": int(self.pid),
                           "money": trade["money"], "status": 1})


def epay_submit_params(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
