"""Data for a flash-sale run (called by bench/flash_sale.py with the stack's env):
a product with K keys, N unpaid EPay orders, and N signed notify bodies (shuffled)."""

import argparse
import os
import random
import secrets
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from inventory.services import keys_import  # noqa: E402
from payments.models import Payment  # noqa: E402
from payments.providers.epay import epay_sign  # noqa: E402
from riskctl.models import Assessment, RiskEvent  # noqa: E402
from shop.models import Order, OrderLine, Product  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--keys", type=int, required=True)
parser.add_argument("--orders", type=int, required=True)
parser.add_argument("--bodies", required=True)
parser.add_argument("--copies", type=int, default=1, help="send each notify this many times (chaos)")
parser.add_argument("--forged", type=int, default=0, help="add this many notifies with a bad sign (chaos)")
parser.add_argument("--wrong-amount", type=int, default=0,
                    help="add this many correctly signed notifies for too little money under a new trade (chaos)")
args = parser.parse_args()

price = Decimal("10.00")
product = Product.objects.create(slug="flash", name="Flash sale card", price=price, max_per_order=1)
keys_import(product=product, source="bench",
            entries=((i + 1, f"FLASH-{i:07d}-{secrets.token_hex(4).upper()}") for i in range(args.keys)))
hold = timezone.now() + timedelta(hours=1)
with transaction.atomic():
    orders = Order.objects.bulk_create(
        Order(order_no=f"F{i:013d}", token_hash=secrets.token_hex(32), email=f"b{i}@example.com", amount=price,
              currency="CNY", hold_expires_at=hold)
        for i in range(args.orders)
    )
    OrderLine.objects.bulk_create(
        OrderLine(order=o, product=product, quantity=1, unit_price=price, amount=price) for o in orders
    )
    Payment.objects.bulk_create(
        Payment(order=o, provider="epay", reference=o.order_no, amount=price, currency="CNY") for o in orders
    )
    # What a real checkout leaves behind for the risk check at payment: the
    # buyer's identifiers (its checkout assessment) and the ORDER_CREATED event.
    buyers = [dict(email=o.email, ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", device=f"dev-{i:08d}")
              for i, o in enumerate(orders)]
    Assessment.objects.bulk_create(
        Assessment(ref=f"B-{i:08d}", stage=Assessment.Stage.CHECKOUT, order=o, product_id=product.pk,
                   decision="ALLOW", score=0, amount=price, quantity=1, **buyers[i])
        for i, o in enumerate(orders)
    )
    RiskEvent.objects.bulk_create(
        RiskEvent(kind="ORDER_CREATED", order_id=o.pk, product_id=product.pk, quantity=1, amount=price, **buyers[i])
        for i, o in enumerate(orders)
    )
bodies = []
for i, order in enumerate(orders):
    params = {"pid": os.environ["EPAY_PID"], "trade_no": f"T{i:015d}", "out_trade_no": order.order_no,
              "type": "alipay", "name": "Flash sale card", "money": "10.00", "trade_status": "TRADE_SUCCESS",
              "param": "", "sign_type": "MD5"}
    params["sign"] = epay_sign(params, os.environ["EPAY_KEY"])
    bodies.extend([urlencode(params)] * args.copies)
    if i < args.forged:
        bodies.append(urlencode({**params, "sign": "0" * 32}))
    if args.forged <= i < args.forged + args.wrong_amount:
        wrong = {**params, "money": "0.01", "trade_no": f"W{i:015d}"}
        wrong.pop("sign")
        wrong["sign"] = epay_sign(wrong, os.environ["EPAY_KEY"])
        bodies.append(urlencode(wrong))
random.shuffle(bodies)
Path(args.bodies).write_text("\n".join(bodies) + "\n")
print(f"{args.keys} keys, {args.orders} orders, {len(bodies)} notify bodies")
