"""Every state change of a key is in the key audit log: sold, delivered,
released — written by the same statement that moves the keys."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory.models import CardKey, KeyAuditEvent
from inventory.services import KeysUnavailable, keys_release, keys_reserve
from shop.models import OrderLine
from tests.keys.conftest import pay

pytestmark = pytest.mark.django_db


def _log(key_ids):
    return list(
        KeyAuditEvent.objects.filter(card_key_id__in=key_ids).order_by("card_key_id", "id")
        .values_list("card_key_id", "action", "actor", "ip", "detail")
    )


def test_the_paid_flow_records_sold_and_delivered_with_the_order_number(make_product, make_unpaid_order):
    # given
    product = make_product(keys=3)
    order = make_unpaid_order(product=product, quantity=2)
    # when
    pay(order)
    # then
    ids = sorted(CardKey.objects.filter(order_line__order=order).values_list("pk", flat=True))
    detail = f"order {order.order_no}"
    assert _log(ids) == [
        (ids[0], "SOLD", "system", None, detail), (ids[0], "DELIVERED", "system", None, detail),
        (ids[1], "SOLD", "system", None, detail), (ids[1], "DELIVERED", "system", None, detail),
    ]


def test_the_claim_and_its_audit_rows_are_one_statement(make_product, make_unpaid_order):
    # given
    product = make_product(keys=3)
    order = make_unpaid_order(product=product, quantity=3)
    line = OrderLine.objects.get(order=order)  # without its order loaded: the detail names the line
    # when
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        claimed = keys_reserve(line=line)
    # then
    writes = [q["sql"] for q in queries.captured_queries if "keyauditevent" in q["sql"].lower()]
    assert len(writes) == 1 and writes[0].lstrip().startswith("WITH dealt AS")
    assert [(row[1], row[4]) for row in _log(claimed)] == [("SOLD", f"order line {line.pk}")] * 3


def test_a_short_claim_leaves_no_audit_rows(make_product, make_unpaid_order):
    # given
    product = make_product(keys=1)
    line = make_unpaid_order(product=product, quantity=2).lines.get()
    # when
    with pytest.raises(KeysUnavailable), transaction.atomic():
        keys_reserve(line=line)
    # then
    assert KeyAuditEvent.objects.exclude(action="IMPORTED").count() == 0


def test_releasing_reserved_keys_is_audited(make_product, make_unpaid_order):
    # given
    product = make_product(keys=2)
    line = make_unpaid_order(product=product, quantity=2).lines.get()
    with transaction.atomic():
        claimed = keys_reserve(line=line)
    # when
    with transaction.atomic():
        released = keys_release(line=line, actor="staff:alice")
    # then
    assert released == 2
    assert [row[1:3] for row in _log(claimed)] == [("SOLD", "system"), ("RELEASED", "staff:alice")] * 2
    assert CardKey.objects.filter(pk__in=claimed, status="AVAILABLE", order_line__isnull=True,
                                  reserved_at__isnull=True).count() == 2


def test_releasing_nothing_writes_nothing(make_product, make_unpaid_order):
    # given
    product = make_product(keys=1)
    line = make_unpaid_order(product=product).lines.get()
    # when
    with transaction.atomic():
        released = keys_release(line=line)
    # then
    assert (released, KeyAuditEvent.objects.filter(action="RELEASED").count()) == (0, 0)
