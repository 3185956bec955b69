"""Reading a large table in id order with flat memory, whatever the pooler.

``QuerySet.iterator()`` keeps memory flat only through a server-side cursor.
Behind PgBouncer in transaction mode (``DB_POOLER=transaction``) those are off
(``shop.project.database_config``), and psycopg then fetches the whole result
before the first row is handed out: the audit over every key or an export of
a million orders would hold them all at once. ``keyset_rows`` reads the rows
a page at a time instead, each page a query of its own that starts after the
last id seen (``WHERE id > last ORDER BY id LIMIT n``: an index range scan,
as cheap for the last page as for the first), on either kind of connection.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet


def keyset_rows(queryset: QuerySet, *, chunk_size: int = 1000, limit: int | None = None) -> Iterator:
    """The rows of ``queryset`` in primary-key order, at most ``limit``:
    model instances, or ``values_list`` tuples whose first field is the pk.
    Rows added behind the reader are not seen, rows added ahead of it are."""
    last, left = None, limit
    while left is None or left > 0:
        size = chunk_size if left is None else min(chunk_size, left)
        page = list((queryset if last is None else queryset.filter(pk__gt=last)).order_by("pk")[:size])
        yield from page
        if len(page) < size:
            return
        last = page[-1][0] if isinstance(page[-1], tuple) else page[-1].pk
        if left is not None:
            left -= len(page)
