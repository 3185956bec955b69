"""Fixtures of the payment tests: orders paid through EPay (EPay itself is configured by
the shared ``epay`` fixture), the payments queue as in production."""

from __future__ import annotations

import django_rq
import pytest

from payments.models import Payment
from payments.providers.epay import epay_sign
from payments.services.inbox import APPLY_QUEUE
from shop.models import Order
from tests.conftest import EPAY_KEY

EPAY_NOTIFY_URL = "/payments/epay/notify"


@pytest.fixture
def make_epay_order(make_unpaid_order, epay):
    """An unpaid order whose payment goes through EPay, with ``order_no`` if given."""

    def make(*, product, quantity: int = 1, order_no: str | None = None) -> Order:
        order = make_unpaid_order(product=product, quantity=quantity)
        if order_no:
            Order.objects.filter(pk=order.pk).update(order_no=order_no)
            order.refresh_from_db()
        Payment.objects.filter(order=order).update(provider="epay", reference=order.order_no)
        return order

    return make


def epay_notice(order: Order, *, trade_no: str = "2024010112000012345", money: str | None = None,
                status: str = "TRADE_SUCCESS", key: str = EPAY_KEY, **extra) -> dict:
    params = {
        "pid": "1001", "trade_no": trade_no, "out_trade_no": order.order_no, "type": "alipay", "name": "VIP 30d",
        "money": f"{order.amount:.2f}" if money is None else money, "trade_status": status, "param": "", **extra,
    }
    params["sign"] = epay_sign(params, key)
    params["sign_type"] = "MD5"
    return params


@pytest.fixture
def queued(monkeypatch, redis_clean):
    """The payments queue as in production: jobs wait for a worker (the
    notices a test posts stay stored until it applies them)."""
    queues = django_rq.settings.QUEUES
    monkeypatch.setitem(queues, APPLY_QUEUE, {**queues[APPLY_QUEUE], "ASYNC": True})
    return django_rq.get_queue(APPLY_QUEUE)
