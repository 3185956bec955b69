"""Orders for bench/lighthouse.py (called with the stack's env, after
``manage.py demo``): one awaiting payment (its page offers Pay now) and one
paid through a signed EPay notify to the running web, delivered by the
stack's worker. Prints the order numbers and their signed links as JSON."""

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from payments.providers.epay import epay_sign  # noqa: E402
from payments.services.checkout import checkout_start_payment  # noqa: E402
from shop.access import order_link_sign  # noqa: E402
from shop.models import Order, OrderStatus  # noqa: E402

PRODUCT = "steam-wallet-50"


def order_place(email: str) -> Order:
    started = checkout_start_payment(product_slug=PRODUCT, quantity=1, email=email, provider_id="epay",
                                     client_ip="127.0.0.1", device="lighthouse", user_agent="bench/lighthouse.py")
    return started.order


def order_pay(order: Order, *, timeout: float = 60) -> None:
    payment = order.payments.get()
    params = {"pid": os.environ["EPAY_PID"], "trade_no": f"LH{order.pk:010d}", "out_trade_no": payment.reference,
              "type": "alipay", "name": "Lighthouse", "money": f"{payment.amount:.2f}",
              "trade_status": "TRADE_SUCCESS", "param": "", "sign_type": "MD5"}
    params["sign"] = epay_sign(params, os.environ["EPAY_KEY"])
    with urllib.request.urlopen(f"{settings.SITE_URL}/payments/epay/notify", data=urlencode(params).encode(),
                                timeout=10) as response:
        assert response.read() == b"success"
    deadline = time.monotonic() + timeout
    while Order.objects.get(pk=order.pk).status != OrderStatus.DELIVERED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"order {order.order_no} not delivered: {Order.objects.get(pk=order.pk).status}")
        time.sleep(0.2)


unpaid = order_place("unpaid@example.com")
paid = order_place("paid@example.com")
order_pay(paid)
print(json.dumps({
    "product": PRODUCT,
    "unpaid": {"order_no": unpaid.order_no, "link": f"/orders/{unpaid.order_no}/?s={order_link_sign(unpaid.order_no)}"},
    "paid": {"order_no": paid.order_no, "link": f"/orders/{paid.order_no}/?s={order_link_sign(paid.order_no)}"},
}))
