"""The claim's (and the checkout hold's) cost does not grow with the keys sold since the planner last
looked: it reads the claim index, never the primary key past every key sold
(the oldest keys go first, so they are all in front of the free ones)."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory import services
from inventory.models import CardKey, CardKeyStatus
from shop.models import OrderLine

pytestmark = pytest.mark.django_db


def _rows_removed_by_filter(plan: dict) -> int:
    return plan.get("Rows Removed by Filter", 0) + sum(_rows_removed_by_filter(p) for p in plan.get("Plans", []))


def _explain(sql: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT explain")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
        cursor.execute("ROLLBACK TO SAVEPOINT explain")
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


@pytest.mark.slow
@pytest.mark.parametrize("claim", ["one line", "a batch", "a checkout hold"])
def test_a_claim_after_many_sales_reads_only_free_keys(claim, make_product, make_unpaid_order):
    # given: statistics taken while every key was free, then the oldest
    # 15,000 of 20,000 keys gone (voided here: sold keys look the same to the claim)
    product = make_product(keys=20_000)
    order = make_unpaid_order(product=product)
    line = OrderLine.objects.get(order=order)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {CardKey._meta.db_table}")
    gone = CardKey.objects.filter(product=product).order_by("id").values_list("id", flat=True)[:15_000]
    CardKey.objects.filter(pk__in=list(gone)).update(status=CardKeyStatus.VOID)
    # when: the claim statement, as the service sends it, explained
    with CaptureQueriesContext(connection) as statements:
        if claim == "one line":
            services.keys_reserve(line=line)
        else:
            services.keys_claim(requests=[services.ClaimRequest(lines=[services.line_claim(line)])])
    (locking,) = [q["sql"] for q in statements.captured_queries if "SKIP LOCKED" in q["sql"]]
    plan = _explain(locking)
    # then: it skipped no sold key row by row (the primary-key walk filtered out 15,000)
    assert _rows_removed_by_filter(plan) < 100
    assert "cardkey_claim_idx" in json.dumps(plan)
