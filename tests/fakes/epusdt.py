"""A fake epusdt gateway, written from the original epusdt's Go source (not
the shop's code): ``/api/v1/order/create-transaction`` (signed JSON, its
status_code envelope, 401 for a bad signature, 10002 for an order id used
before), ``/pay/check-status/{trade_id}`` (unsigned, 10008 for an unknown
trade), and the JSON notify it POSTs once the USDT arrived.

Its rate is yuan per USDT; the USDT amount is the yuan amount divided by the
rate at two places (epusdt's own rounding), raised by 0.01 while another
waiting trade holds that amount on the wallet."""

from __future__ import annotations

import hashlib
import itertools
import json
from decimal import ROUND_HALF_EVEN, Decimal

from tests.fakes.base import FakeGateway, Reply, Request

WALLET = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
WAITING, PAID, EXPIRED = 1, 2, 3


class Unsignable(TypeError):
    """util/sign's "signature marshal error": a value it cannot write."""


def _go_number(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): the shortest digits, no exponent."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")


def gateway_sign(params: dict, token: str) -> str:
    """epusdt's util/sign: ``k=v`` for every non-empty value but the
    signature, numbers as Go prints a float64, sorted, joined with ``&``,
    the token appended, MD5 in lowercase hex."""
    pairs = []
    for key, value in params.items():
        if key == "signature" or value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = _go_number(value)
        elif not isinstance(value, str):
            raise Unsignable("signature marshal error")
        if value != "":
            pairs.append(f"{key}={value}")
    return hashlib.md5(("&".join(sorted(pairs)) + token).encode()).hexdigest()


class FakeEpusdt(FakeGateway):
    def __init__(self, *, token: str = "EPUSDT-TEST-TOKEN", rate: str = "7.00", wallet: str = WALLET):
        self.token = token
        self.rate = Decimal(rate)
        self.wallet = wallet
        self.trades: dict[str, dict] = {}  # order_id → the gateway's record
        self.notify_replies: list[tuple[int, str]] = []
        # Changes to the create-transaction answer's data (a gateway answering nonsense).
        self.answer_override: dict = {}
        self._serial = itertools.count(1)
        self._blocks = itertools.count(1)
        super().__init__()

    # --- the HTTP side -------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.path == "/api/v1/order/create-transaction" and request.method == "POST":
            return self._create(request)
        if request.path.startswith("/pay/check-status/") and request.method == "GET":
            return self._check_status(request.path.rsplit("/", 1)[1])
        # echo's 404, through epusdt's error handler: HTTP 200, plain text
        return Reply(200, "Not Found")

    @staticmethod
    def _envelope(status_code: int, message: str, data=None) -> Reply:
        return Reply(200, {"status_code": status_code, "message": message, "data": data, "request_id": "fake"})

    def _create(self, request: Request) -> Reply:
        try:
            params = json.loads(request.body)
        except ValueError:
            return self._envelope(401, "签名认证错误")  # the middleware: unreadable → SignatureErr
        if not isinstance(params, dict) or "signature" not in params:
            return self._envelope(401, "签名认证错误")
        try:
            expected = gateway_sign(params, self.token)
        except Unsignable:
            return self._envelope(401, "签名认证错误")
        if expected != params["signature"]:
            return self._envelope(401, "签名认证错误")
        order_id, amount, notify_url = params.get("order_id"), params.get("amount"), params.get("notify_url")
        if not isinstance(amount, (int, float)) or isinstance(amount, bool):
            if amount is not None:
                return self._envelope(10009, "无法解析请求参数")
            return self._envelope(400, "支付金额 不能为空")
        if not isinstance(order_id, str) or not order_id or len(order_id) > 32:
            return self._envelope(400, "订单号 不能为空")
        if amount <= 0.01:
            return self._envelope(400, "支付金额 值必须大于 0.01")
        if not isinstance(notify_url, str) or not notify_url:
            return self._envelope(400, "异步回调网址 不能为空")
        if order_id in self.trades:
            return self._envelope(10002, "支付交易已存在，请勿重复创建")
        yuan = Decimal(_go_number(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        usdt = (yuan / self.rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        if usdt < Decimal("0.01"):
            return self._envelope(10004, "支付金额有误, 无法满足最小支付单位")
        held = {t["actual_amount"] for t in self.trades.values() if t["status"] == WAITING}
        while float(usdt) in held:
            usdt += Decimal("0.01")
        serial = next(self._serial)
        trade_id = f"20260101{1767225600000 + serial}{serial % 1000:03d}"  # epusdt's date+millis+3 digits
        trade = {
            "trade_id": trade_id, "order_id": order_id, "amount": amount, "actual_amount": float(usdt),
            "token": self.wallet, "status": WAITING, "notify_url": notify_url,
            "redirect_url": params.get("redirect_url", ""), "block_transaction_id": "",
        }
        self.trades[order_id] = trade
        data = {
            "trade_id": trade_id, "order_id": order_id, "amount": amount, "actual_amount": float(usdt),
            "token": self.wallet, "expiration_time": 1767226200,
            "payment_url": f"{self.url}/pay/checkout-counter/{trade_id}", **self.answer_override,
        }
        return self._envelope(200, "success", data)

    def _check_status(self, trade_id: str) -> Reply:
        trade = next((t for t in self.trades.values() if t["trade_id"] == trade_id), None)
        if trade is None:
            return self._envelope(10008, "订单不存在")
        return self._envelope(200, "success", {"trade_id": trade_id, "status": trade["status"]})

    # --- the test's side -----------------------------------------------------

    def trade(self, order_id: str) -> dict:
        return self.trades[order_id]

    def mark_paid(self, order_id: str) -> dict:
        """The chain watcher saw the USDT arrive (no notify sent)."""
        trade = self.trades[order_id]
        trade["status"] = PAID
        trade["block_transaction_id"] = trade["block_transaction_id"] or f"{next(self._blocks):064x}"
        return trade

    def expire(self, order_id: str) -> dict:
        trade = self.trades[order_id]
        trade["status"] = EXPIRED
        return trade

    def callback(self, order_id: str, **override) -> dict:
        """The signed notify body of ``order_id``'s trade (as it stands, with
        ``override`` applied before signing)."""
        trade = self.trades[order_id]
        body = {k: trade[k] for k in ("trade_id", "order_id", "amount", "actual_amount", "token",
                                      "block_transaction_id", "status")}
        body.update(override)
        body["signature"] = gateway_sign(body, self.token)
        return body

    def send(self, body: dict) -> tuple[int, str]:
        """POST a notify body to the trade's notify URL, as epusdt does (JSON)."""
        trade = self.trades[body["order_id"]] if body.get("order_id") in self.trades else None
        url = trade["notify_url"] if trade else next(iter(self.trades.values()))["notify_url"]
        reply = self.post(url, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        self.notify_replies.append(reply)
        return reply

    def pay(self, order_id: str) -> tuple[int, str]:
        """The buyer sent the USDT: the trade is paid and the signed status-2
        notify is POSTed to the recorded notify URL. The shop's (status, body)."""
        self.mark_paid(order_id)
        return self.send(self.callback(order_id))
