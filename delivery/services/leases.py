"""Leases: which process leads a single-runner job (``Lease`` says why a row).

Each call is one statement in autocommit, so it works the same through
PgBouncer's transaction pooling as on a direct connection. Times come from
the database's clock (``clock_timestamp()``: the real time even inside a
transaction, where ``now()`` is the transaction's start), never from the
callers' clocks, which drift apart across machines.

A lease is safe only while every step its holder takes between two renewals
is shorter than the lease: the holder renews before each step and stops at
the first renewal that fails.
"""

from __future__ import annotations

import os
import secrets
import socket

from django.db import connection

from delivery.models import Lease

_TABLE = Lease._meta.db_table

# Insert the lease, or take it over where it lapsed, or extend it where the
# caller already holds it; otherwise change nothing and return no row. One
# statement: two contenders are serialised on the row by ON CONFLICT.
_HOLD = f"""
INSERT INTO {_TABLE} AS lease (name, holder, acquired_at, expires_at)
VALUES (%(name)s, %(holder)s, clock_timestamp(), clock_timestamp() + make_interval(secs => %(seconds)s))
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder,
       expires_at = EXCLUDED.expires_at,
       acquired_at = CASE WHEN lease.holder = EXCLUDED.holder THEN lease.acquired_at ELSE EXCLUDED.acquired_at END
 WHERE lease.holder = EXCLUDED.holder OR lease.expires_at <= clock_timestamp()
RETURNING holder
"""

# Expire the lease now, if the caller still holds it: the row stays, and shows who led last.
_RELEASE = f"""
UPDATE {_TABLE} SET expires_at = clock_timestamp()
 WHERE name = %(name)s AND holder = %(holder)s AND expires_at > clock_timestamp()
"""


def lease_holder_new() -> str:
    """A holder id unique to this process run: host, pid and a random part
    (a pid is reused after a restart, and containers all run as pid 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_hold(*, name: str, holder: str, seconds: float) -> bool:
    """Take the lease ``name`` for ``holder``, or renew it if ``holder`` has it:
    True when ``holder`` now leads for ``seconds`` from the database's now.
    False when someone else holds a lease that has not expired: a holder that
    gets False has lost the lease and must stop acting."""
    if seconds <= 0:
        raise ValueError("a lease must last longer than 0 seconds")
    with connection.cursor() as cursor:
        cursor.execute(_HOLD, {"name": name, "holder": holder, "seconds": float(seconds)})
        return cursor.fetchone() is not None


def lease_release(*, name: str, holder: str) -> bool:
    """Give the lease up at once (a clean shutdown), so the next contender
    need not wait for it to expire. False if ``holder`` no longer held it."""
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE, {"name": name, "holder": holder})
        return cursor.rowcount == 1
