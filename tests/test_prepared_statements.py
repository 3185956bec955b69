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


def _column_type_changed_elsewhere(sql_type: str) -> None:
    """What a migration run by another process does: a new type for the product's name."""
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
                         host=settings["HOST"], port=settings["PORT"] or None, autocommit=True) as other:
        other.execute(f'ALTER TABLE "shop_product" ALTER COLUMN "name" TYPE {sql_type}')


@pytest.mark.django_db(transaction=True)
def test_a_statement_prepared_before_another_process_altered_its_table_still_runs():
    # given: a statement prepared on this connection, then the column it reads given a new type
    Product.objects.create(slug="first", name="First", price="1.00")
    for _ in range(PREPARE_THRESHOLD + 1):
        Product.objects.get(slug="first")
    assert _prepared_reading_slugs() == 1
    _column_type_changed_elsewhere("varchar(250)")
    try:
        # when: run again (PostgreSQL refuses the old plan: "cached plan must not change result type")
        names = [Product.objects.get(slug="first").name for _ in range(2)]
    finally:
        _column_type_changed_elsewhere("varchar(200)")
    # then: run again unprepared, and prepared afresh later
    assert names == ["First", "First"]


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_refused_statement_fails_once_and_the_next_transaction_runs():
    from django.db import NotSupportedError, transaction

    # given
    Product.objects.create(slug="first", name="First", price="1.00")
    for _ in range(PREPARE_THRESHOLD + 1):
        Product.objects.get(slug="first")
    _column_type_changed_elsewhere("varchar(250)")
    try:
        # when: in a transaction it cannot be run again (the transaction is aborted) ...
        with pytest.raises(NotSupportedError, match="cached plan must not change result type"):
            with transaction.atomic():
                Product.objects.get(slug="first")
        # then: ... but the rollback made psycopg forget its prepared statements
        with transaction.atomic():
            assert Product.objects.get(slug="first").name == "First"
    finally:
        _column_type_changed_elsewhere("varchar(200)")
