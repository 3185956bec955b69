"""shop.project.paging.keyset_rows: large tables read a page a query, so memory
stays flat also where server-side cursors are off (PgBouncer in transaction mode)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import CardKey
from shop.project.paging import keyset_rows

pytestmark = pytest.mark.django_db


def test_rows_come_in_id_order_a_bounded_page_per_query(make_product):
    # given
    make_product(keys=25)
    ids = list(CardKey.objects.order_by("pk").values_list("pk", flat=True))
    # when
    with CaptureQueriesContext(connection) as captured:
        rows = list(keyset_rows(CardKey.objects.values_list("pk", "status"), chunk_size=10))
    # then: every row once, in order, in three queries of at most ten rows, each after the last id seen
    assert [pk for pk, _ in rows] == ids
    sqls = [query["sql"] for query in captured.captured_queries]
    assert len(sqls) == 3 and all("LIMIT 10" in sql for sql in sqls)
    assert f'"id" > {ids[9]}' in sqls[1] and f'"id" > {ids[19]}' in sqls[2]


def test_a_limit_stops_early_and_instances_page_by_their_pk(make_product):
    # given
    make_product(keys=25)
    # when
    with CaptureQueriesContext(connection) as captured:
        keys = list(keyset_rows(CardKey.objects.filter(status="AVAILABLE"), chunk_size=10, limit=12))
    # then
    assert [key.pk for key in keys] == list(CardKey.objects.order_by("pk").values_list("pk", flat=True)[:12])
    assert len(captured.captured_queries) == 2 and "LIMIT 2" in captured.captured_queries[1]["sql"]
