"""Inserting rows whose unique value is drawn at random (an order number, an
assessment's reference), in one statement and without a savepoint.

A plain INSERT that hits a taken value raises, and inside a transaction
that aborts the transaction unless a savepoint wrapped it (SAVEPOINT +
INSERT + RELEASE: three round trips per row, on the checkout's hot path).
``INSERT … ON CONFLICT DO NOTHING RETURNING`` tells the caller which rows
went in instead, so it can draw again for the others.

Project plumbing, below every app: the shop and riskctl both use it.
"""

from __future__ import annotations

from django.db import router
from django.db.models import Model
from django.db.models.constants import OnConflict


def rows_insert_unless_taken(*, objs: list[Model], key: str) -> list[Model]:
    """Insert ``objs`` (one model, no primary key yet) in one statement,
    skipping every row that conflicts with a unique constraint; return the
    ones inserted, their primary key set. ``key`` names the unique field the
    caller draws at random: the rows left out are the ones whose ``key`` was
    taken (draw again and insert those). Field defaults and ``auto_now``
    apply as in ``save()``; no signals are sent (the project has none)."""
    if not objs:
        return []
    model = type(objs[0])
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.generated and f is not meta.auto_field]
    using = router.db_for_write(model)
    rows = model._base_manager._insert(
        objs, fields=fields, returning_fields=[meta.pk, meta.get_field(key)], using=using,
        on_conflict=OnConflict.IGNORE,
    )
    inserted = {}
    for row in rows:
        if row is not None:  # one object and a conflict: the cursor returned no row
            inserted[row[1]] = row[0]
    done = []
    for obj in objs:
        pk = inserted.pop(getattr(obj, key), None)  # two objects drawing one value: the first went in
        if pk is not None:
            obj.pk = pk
            obj._state.adding, obj._state.db = False, using
            done.append(obj)
    return done
