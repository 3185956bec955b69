"""The end of a transactional test: empty the tables the test wrote to.

Django's ``TransactionTestCase`` ends each test with ``flush``: one TRUNCATE
of every table (about sixty here). PostgreSQL gives each truncated table and
index a new file, so that costs 0.2–0.5 s per test even when the test wrote
three rows, and some 200 tests here are transactional (threads, subprocesses,
live servers). This does the same job, by rows: it finds the tables holding
a row (one query) and DELETEs from those, with the foreign keys deferred to
the commit (Django creates them DEFERRABLE), in a few milliseconds.

The end state is the flush's: every table empty, sequences left where they
were (the flush does not reset them either), and ``post_migrate`` emitted
afterwards, so the content types and permissions come back as they do after
a flush. A table whose rows a trigger protects from DELETE (the append-only
``shop_orderevent``) is TRUNCATEd, as the flush does: TRUNCATE is not a row
operation. Tests that ask for ``available_apps`` or ``serialized_rollback``
keep Django's own flush.
"""

from __future__ import annotations

from django.core.management.sql import emit_post_migrate_signal
from django.db import connections, transaction
from django.test import TransactionTestCase


def tables_empty(alias: str) -> list[str]:
    """Empty every table of the project's models in database ``alias``;
    return the tables that held a row."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    if not tables:
        return []
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"EXISTS (SELECT FROM {quote(table)})" for table in tables))
        full = [table for table, has_rows in zip(tables, cursor.fetchone()) if has_rows]
        if not full:
            return []
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgtype & 8 = 8 AND c.relname = ANY(%s) "  # 8: fires on DELETE
            "AND pg_catalog.pg_table_is_visible(c.oid)",
            [full],
        )
        guarded = {name for (name,) in cursor.fetchall()}
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        if guarded:
            # CASCADE: TRUNCATE refuses a table other tables reference unless
            # they go with it; they are being emptied anyway.
            cursor.execute(f"TRUNCATE {', '.join(quote(table) for table in sorted(guarded))} CASCADE")
        for table in full:
            if table not in guarded:
                cursor.execute(f"DELETE FROM {quote(table)}")
    return full


_django_fixture_teardown = TransactionTestCase._fixture_teardown


def _fixture_teardown(self) -> None:
    aliases = self._databases_names(include_mirrors=False)
    if (self.available_apps is not None or self.serialized_rollback
            or any(connections[alias].vendor != "postgresql" for alias in aliases)):
        return _django_fixture_teardown(self)
    for alias in aliases:
        tables_empty(alias)
        emit_post_migrate_signal(0, False, alias)  # as the flush does: content types and permissions back


def install() -> None:
    """Use ``tables_empty`` at the end of every transactional test (tests/conftest.py)."""
    TransactionTestCase._fixture_teardown = _fixture_teardown
