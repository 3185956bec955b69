"""The database connection settings (``DATABASES["default"]``) from ``DATABASE_URL``,
``DB_CONN_MAX_AGE``, ``DB_CONNECT_TIMEOUT``, ``DB_POOLER`` and ``DB_PREPARED_STATEMENTS``.

Straight on PostgreSQL (or through PgBouncer in session mode) the apps bind
parameters on the server and psycopg prepares a statement on a connection
once it ran it 5 times (``DB_PREPARED_STATEMENTS``, on by default): a
checkout's dozen short statements are then not parsed and planned afresh each
time. Measured (bench/checkout.py, 1,000 API checkouts, 2 runs each):
PostgreSQL's CPU per checkout 4.4 → 3.0 ms, the web's 10.5 → 9.4 ms,
136 → 165 checkouts/s. The shop's written-out SQL names its result columns
(no top-level ``SELECT *``), so a column a migration adds while old
processes run does not change a prepared statement's result type; a
migration that changes a column's type does, and PostgreSQL refuses the old
plan: ``shop.project.stale_plans`` runs such a statement again, unprepared.

Behind PgBouncer in transaction mode (``DB_POOLER=transaction``) each
transaction may run on another server connection, so nothing may outlive one:
- no server-side cursors: ``QuerySet.iterator()`` outside a transaction
  declares a ``WITH HOLD`` cursor, which the next transaction's server
  connection does not have (Django's ``DISABLE_SERVER_SIDE_CURSORS``); large
  reads (the audit, exports) page by id instead (``shop.project.paging``);
- no prepared statements: psycopg prepares a query on the connection after
  it ran a few times, and PgBouncer before 1.21 (Debian 12 ships 1.18) does not
  carry them across server connections. Django already turns them off
  (``prepare_threshold`` None); a ``DATABASE_URL`` asking for them is refused;
- no session state: no ``SET`` (the time zone Django sets on a new connection
  is one of the parameters PgBouncer itself carries over), no session advisory
  lock, no ``LISTEN``, no temporary table. The code holds only
  transaction-level advisory locks (``pg_advisory_xact_lock``).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from shop.project.envconfig import database_from_url, env_bool, env_int, env_str

# Executions of one statement on a connection before psycopg prepares it
# (psycopg's own default; a DATABASE_URL may say ?prepare_threshold=N).
PREPARE_THRESHOLD = 5

POOLERS = {"": "none: the apps connect to PostgreSQL", "session": "PgBouncer in session mode",
           "transaction": "PgBouncer in transaction mode"}


def database_settings(url: str) -> dict:
    """A ``DATABASES`` entry for ``url``, set up for the pooler ``DB_POOLER`` names."""
    pooler = env_str("DB_POOLER", "").strip().lower()
    if pooler not in POOLERS:
        raise ImproperlyConfigured(f"DB_POOLER must be one of {sorted(POOLERS)}, got {pooler!r}")
    # Per host of a host list: a dead first host that drops packets must not hold
    # every new connection for the kernel's SYN retries before the next is tried.
    config = database_from_url(url, connect_timeout=env_int("DB_CONNECT_TIMEOUT", 3))
    # A connection is kept between requests (DB_CONN_MAX_AGE seconds) and checked
    # before reuse; behind PgBouncer it is a connection to PgBouncer, which is cheap.
    config.update(CONN_MAX_AGE=env_int("DB_CONN_MAX_AGE", 60), CONN_HEALTH_CHECKS=True)
    # The outermost writing service opens the transaction, not the request.
    config["ATOMIC_REQUESTS"] = False
    if pooler == "transaction":
        if config["OPTIONS"].get("prepare_threshold") is not None:
            raise ImproperlyConfigured("DATABASE_URL asks for prepared statements (prepare_threshold), "
                                       "which DB_POOLER=transaction cannot carry")
        if env_bool("DB_PREPARED_STATEMENTS", False):
            raise ImproperlyConfigured("DB_PREPARED_STATEMENTS=1, which DB_POOLER=transaction cannot carry")
        config["OPTIONS"]["prepare_threshold"] = None
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
    elif env_bool("DB_PREPARED_STATEMENTS", True):
        # Django binds on the client and turns psycopg's preparing off
        # (prepare_threshold None) unless told; psycopg prepares only what the
        # server binds.
        config["OPTIONS"]["server_side_binding"] = True
        config["OPTIONS"]["prepare_threshold"] = int(config["OPTIONS"].get("prepare_threshold", PREPARE_THRESHOLD))
    return config
