"""Set-up for bench/email_throughput.py (run with the stack's env): N paid,
FULFILLING orders whose email deliveries are PENDING and enqueued, written in
bulk so the measurement is the sending alone. The deliveries are enqueued as
the batch payment applier does: one ``deliveries_enqueue`` per 100 orders."""

import argparse
import secrets
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from delivery.models import Channel, Delivery, DeliveryStatus  # noqa: E402
from delivery.services import deliveries_enqueue  # noqa: E402
from inventory.services import keys_import  # noqa: E402
from shop.models import Order, OrderLine, OrderStatus, Product  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--orders", type=int, required=True)
args = parser.parse_args()

price = Decimal("10.00")
now = timezone.now()
product = Product.objects.create(slug="mail", name="Mail card", price=price)
keys_import(product=product, source="bench",
            entries=((i + 1, f"MAIL-{i:07d}-{secrets.token_hex(4).upper()}") for i in range(args.orders)))
with transaction.atomic():
    orders = Order.objects.bulk_create(
        Order(order_no=f"M{i:013d}", token_hash=secrets.token_hex(32), email=f"m{i}@example.com", amount=price,
              currency="CNY", status=OrderStatus.FULFILLING, paid_at=now, hold_expires_at=now + timedelta(hours=1))
        for i in range(args.orders)
    )
    lines = OrderLine.objects.bulk_create(
        OrderLine(order=o, product=product, quantity=1, unit_price=price, amount=price) for o in orders
    )
    with connection.cursor() as cursor:  # key n to line n, in one statement
        cursor.execute(
            """UPDATE inventory_cardkey AS k SET status = 'DELIVERED', order_line_id = l.id, delivered_at = now()
               FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM shop_orderline WHERE id = ANY(%s)) AS l,
                    (SELECT id, row_number() OVER (ORDER BY id) AS n FROM inventory_cardkey WHERE product_id = %s) AS c
               WHERE k.id = c.id AND c.n = l.n""",
            [[line.pk for line in lines], product.pk],
        )
    Delivery.objects.bulk_create(
        Delivery(order=o, channel=Channel.INBOX, status=DeliveryStatus.SENT, attempts=1, sent_at=now) for o in orders
    )
    emails = Delivery.objects.bulk_create(
        Delivery(order=o, channel=Channel.EMAIL, recipient=o.email) for o in orders
    )
APPLIER_BATCH = 100
for start in range(0, len(emails), APPLIER_BATCH):
    deliveries_enqueue(delivery_ids=[d.pk for d in emails[start:start + APPLIER_BATCH]])
print(f"{len(emails)} emails pending")
