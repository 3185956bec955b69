"""The suite's own machinery for running on several pytest-xdist workers
(`make test`): a Redis db per worker, and the end of a transactional test
(tests/db_teardown.py) leaving every table empty, as Django's flush does."""

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from shop.models import OrderEvent
from tests.db_teardown import tables_empty
from tests.settings import redis_db_for_worker


def test_each_worker_gets_its_own_redis_db_above_the_base():
    # when / then
    assert redis_db_for_worker({}) == 9
    assert redis_db_for_worker({"KAMIDROP_TEST_REDIS_DB": "3"}) == 3
    assert [redis_db_for_worker({"KAMIDROP_TEST_REDIS_DB": "9", "PYTEST_XDIST_WORKER": f"gw{n}"})
            for n in range(3)] == [9, 10, 11]


@pytest.mark.parametrize("base, worker", [("15", "gw1"), ("0", "gw0"), ("14", "gw2")])
def test_a_worker_never_gets_make_runs_db_or_one_redis_does_not_have(base, worker):
    with pytest.raises(ImproperlyConfigured, match="choose a base from 1 to 14"):
        redis_db_for_worker({"KAMIDROP_TEST_REDIS_DB": base, "PYTEST_XDIST_WORKER": worker,
                             "PYTEST_XDIST_WORKER_COUNT": "2"})


@pytest.mark.django_db(transaction=True)
def test_the_end_of_a_transactional_test_empties_every_table(make_product, make_unpaid_order, pay, admin_user):
    # given: rows in most tables, order events among them (append-only: a
    # trigger refuses their DELETE), and rows referring to each other
    pay(make_unpaid_order(product=make_product(keys=3)))
    assert OrderEvent.objects.exists()
    # when
    emptied = tables_empty("default")
    # then
    assert {"shop_orderevent", "shop_order", "inventory_cardkey", "auth_user"} <= set(emptied)
    existing = set(connection.introspection.table_names())
    tables = {model._meta.db_table for model in apps.get_models(include_auto_created=True)} & existing
    assert len(tables) > 50
    with connection.cursor() as cursor:
        for table in sorted(tables):
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            assert cursor.fetchone() == (0,), table
        cursor.execute("SELECT count(*) FROM django_migrations")  # as after a flush: the schema's record stays
        assert cursor.fetchone()[0] > 0
