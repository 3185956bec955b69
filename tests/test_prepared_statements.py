"""Statements a connection runs often are prepared on it (DB_PREPARED_STATEMENTS, on by default)."""

import pytest
from django.db import connection

from shop.models import Product
from shop.project.database_config import PREPARE_THRESHOLD

pytestmark = pytest.mark.django_db


def _prepared_reading_slugs() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                       ['%FROM "shop_product" WHERE "shop_product"."slug" = $1%'])
        return cursor.fetchone()[0]


def test_a_statement_run_often_is_prepared_and_answers_with_each_runs_parameters():
    # given
    Product.objects.create(slug="first", name="First", price="1.00")
    Product.objects.create(slug="second", name="Second", price="2.00")
    # when: the same statement, more often than psycopg waits before preparing it
    names = [Product.objects.get(slug=slug).name for slug in ["first", "second"] * PREPARE_THRESHOLD]
    # then: the server planned it once, and each run still read its own row
    assert _prepared_reading_slugs() == 1
    assert names == ["First", "Second"] * PREPARE_THRESHOLD
