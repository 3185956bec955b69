"""A prepared statement whose table another process altered under it.

With prepared statements on (``DB_PREPARED_STATEMENTS``), a migration that
changes a column's type (a longer ``max_length``, say) while the old processes
still run makes PostgreSQL refuse their statements prepared on that table:
"cached plan must not change result type". psycopg forgets its prepared
statements on a rollback (so a statement inside a transaction fails once, the
transaction is rolled back, and the next one is prepared afresh), but not
after a refused statement in autocommit: every later run of it on that
connection would be refused, request after request, until the connection is
closed. So, outside a transaction, the connection's prepared statements are
dropped (``DEALLOCATE ALL``, which psycopg sees and forgets its own) and the
statement, refused before it ran, is run once more.
"""

from __future__ import annotations

from django.db import NotSupportedError

STALE_PLAN = "cached plan must not change result type"


def stale_plan_retry(execute, sql, params, many, context):
    try:
        return execute(sql, params, many, context)
    except NotSupportedError as exc:
        # In a transaction (atomic or not) the statement cannot be run again:
        # the transaction is aborted, and its rollback clears psycopg's cache.
        if STALE_PLAN not in str(exc) or many or not context["connection"].get_autocommit():
            raise
        context["cursor"].execute("DEALLOCATE ALL")
        return execute(sql, params, many, context)


def stale_plan_retry_install(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: every new database connection gets the wrapper."""
    if stale_plan_retry not in connection.execute_wrappers:
        connection.execute_wrappers.append(stale_plan_retry)
