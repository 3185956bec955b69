"""An import outside a transaction inserts its chunks on a thread of its own
while the next chunk is read; inside one (the caller's atomic block) it
inserts in line. Both give the same stock and the same report, a failed
insert is not swallowed, and the thread's connection is closed after."""

import pytest
from django.db import connection, transaction

from inventory import services
from inventory.models import CardKey, ImportBatch
from inventory.services import keys_import
from shop.models import Product

pytestmark = pytest.mark.django_db(transaction=True)

# 11 entries in chunks of 3: a duplicate within one chunk, across chunks, of a
# key already in stock, a blank and an invalid line (a key policy's format).
ENTRIES = [
    (1, "AAAA-0001"), (2, "AAAA-0002"), (3, "AAAA-0001"),
    (4, ""), (5, "AAAA-0003"), (6, "AAAA-0002"),
    (7, "BAD KEY!"), (8, "AAAA-0004"), (9, "AAAA-0005"),
    (10, "OLD-0000"), (11, "AAAA-0006"),
]


def _product(slug: str) -> Product:
    from inventory.models import KeyPolicy

    product = Product.objects.create(slug=slug, name=slug, price="1.00")
    KeyPolicy.objects.create(product=product, format_regex=r"[A-Z]{3,4}-[0-9]{4}")
    keys_import(product=product, source="earlier", entries=[(1, "OLD-0000")])
    return product


def _outcome(product, report):
    stock = sorted(CardKey.objects.filter(product=product).values_list("batch__source", "import_line"))
    issues = [(issue.line, issue.code) for issue in report.issues]
    return report.summary(), issues, stock


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_overlapped_and_in_line_imports_give_the_same_stock_and_report(monkeypatch):
    # given: chunks of 3, one product imported outside a transaction, one inside
    monkeypatch.setattr(services, "IMPORT_CHUNK", 3)
    threads = []
    real_chunk = services._import_chunk

    def chunk_recorded(**kwargs):
        import threading

        threads.append(threading.get_ident())
        return real_chunk(**kwargs)

    monkeypatch.setattr(services, "_import_chunk", chunk_recorded)
    outside, inside = _product("outside"), _product("inside")
    threads.clear()
    before = _backends()
    # when
    overlapped = keys_import(product=outside, source="file", entries=ENTRIES)
    after = _backends()
    overlapped_threads, threads[:] = list(threads), []
    with transaction.atomic():
        in_line = keys_import(product=inside, source="file", entries=ENTRIES)
    # then: the chunks went through another thread the first time, this one the second
    import threading

    assert len(overlapped_threads) == 3 and threading.get_ident() not in overlapped_threads
    assert threads == [threading.get_ident()] * 3
    assert _outcome(outside, overlapped) == _outcome(inside, in_line)
    assert overlapped.summary() == "6 added, 3 duplicate, 1 invalid, 1 blank (11 lines)"
    assert [(issue.line, issue.code) for issue in overlapped.issues] == [
        (3, "DUPLICATE_IN_FILE"), (6, "DUPLICATE_IN_FILE"), (7, "INVALID"), (10, "DUPLICATE_IN_STOCK"),
    ]
    batch = ImportBatch.objects.get(pk=overlapped.batch_id)
    assert (batch.added, batch.duplicates, batch.invalid, batch.blank) == (6, 3, 1, 1)
    # and the insert thread's connection is gone
    assert after == before


def test_a_failed_chunk_insert_is_raised_not_swallowed(monkeypatch):
    # given: the second chunk's insert fails
    monkeypatch.setattr(services, "IMPORT_CHUNK", 3)
    real_chunk = services._import_chunk
    calls = []

    def failing(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real_chunk(**kwargs)

    monkeypatch.setattr(services, "_import_chunk", failing)
    product = _product("failing")
    calls.clear()
    # when / then
    with pytest.raises(RuntimeError, match="database went away"):
        keys_import(product=product, source="file", entries=ENTRIES)
    # the chunk before it was committed; nothing after it was inserted
    assert CardKey.objects.filter(product=product, batch__source="file").count() == 2
    assert len(calls) == 2
