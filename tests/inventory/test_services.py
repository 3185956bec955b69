"""Key stock: sealed at rest, deduplicated on import, claimed all-or-nothing."""

import threading

import pytest
from django.db import connection, transaction

from inventory.models import CardKey, CardKeyStatus
from inventory.services import ImportIssue, KeysUnavailable, key_entries, keys_import, keys_reserve

pytestmark = pytest.mark.django_db


def test_raw_column_holds_no_plaintext(make_product):
    # given
    product = make_product()
    keys_import(product=product, source="t", entries=[(1, "SECRET-AAAA-BBBB-CCCC")])
    # when
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_sealed::text, fingerprint FROM inventory_cardkey")
        sealed, fingerprint = cursor.fetchone()
    # then
    assert "SECRET" not in sealed and "AAAA" not in sealed
    assert b"SECRET".hex() not in sealed
    assert "SECRET" not in fingerprint and len(fingerprint) == 64
    assert CardKey.objects.get().secret == "SECRET-AAAA-BBBB-CCCC"


def test_import_skips_blanks_and_duplicates_within_and_across_imports(make_product):
    # given
    product = make_product()
    keys_import(product=product, source="t", entries=[(1, "KEY-1")])
    # when
    result = keys_import(product=product, source="t",
                         entries=key_entries(["KEY-2\n", "  KEY-1  ", "", "KEY-3", "KEY-2", "   "]))
    # then
    assert (result.added, result.duplicates, result.blank, result.invalid) == (2, 2, 2, 0)
    assert result.issues == [
        ImportIssue(2, "DUPLICATE_IN_STOCK", f"already in stock (import #{result.batch_id - 1}, line 1)"),
        ImportIssue(5, "DUPLICATE_IN_FILE", "same key as line 1"),
    ]
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == ["KEY-1", "KEY-2", "KEY-3"]


def test_a_duplicate_of_a_sold_or_voided_key_says_so(make_product, make_unpaid_order):
    # given: three keys of one import: one sold, one voided, one still in stock
    product = make_product()
    first = keys_import(product=product, source="t", entries=[(1, "KEY-SOLD"), (2, "KEY-VOID"), (3, "KEY-FREE")])
    order = make_unpaid_order(product=product)
    sold = CardKey.objects.get(product=product, import_line=1)
    CardKey.objects.filter(pk=sold.pk).update(status=CardKeyStatus.DELIVERED, order_line=order.lines.get())
    CardKey.objects.filter(product=product, import_line=2).update(status=CardKeyStatus.VOID)
    # when
    result = keys_import(product=product, source="t", entries=[(1, "KEY-SOLD"), (2, "KEY-VOID"), (3, "KEY-FREE")])
    # then
    assert (result.added, result.duplicates) == (0, 3)
    assert result.issues == [
        ImportIssue(1, "DUPLICATE_SOLD", f"already sold (import #{first.batch_id}, line 1)"),
        ImportIssue(2, "DUPLICATE_VOID", f"voided earlier (import #{first.batch_id}, line 2)"),
        ImportIssue(3, "DUPLICATE_IN_STOCK", f"already in stock (import #{first.batch_id}, line 3)"),
    ]
    assert CardKey.objects.filter(product=product).count() == 3


def test_same_key_may_exist_for_two_products(make_product):
    # given
    first, second = make_product(), make_product()
    # when
    keys_import(product=first, source="t", entries=[(1, "SHARED")])
    result = keys_import(product=second, source="t", entries=[(1, "SHARED")])
    # then
    assert result.added == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_imports_of_overlapping_lists_add_each_key_once(make_product):
    # given
    product = make_product()
    first = [f"K-{i:05d}" for i in range(0, 3000)]
    second = [f"K-{i:05d}" for i in range(1500, 4500)]
    results = {}
    start = threading.Barrier(2)

    def run(name, lines):
        try:
            start.wait(timeout=10)
            results[name] = keys_import(product=product, source=name, entries=enumerate(lines, start=1))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=("a", first)), threading.Thread(target=run, args=("b", second))]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then
    assert CardKey.objects.filter(product=product).count() == 4500
    assert results["a"].added + results["b"].added == 4500
    assert results["a"].duplicates + results["b"].duplicates == 1500


def _line(order_factory, product, quantity):
    return order_factory(product=product, quantity=quantity).lines.get()


def test_reserve_takes_the_oldest_keys_for_the_line(make_product, make_unpaid_order):
    # given
    product = make_product(keys=3)
    line = _line(make_unpaid_order, product, 2)
    oldest = list(CardKey.objects.filter(product=product).order_by("id").values_list("id", flat=True))[:2]
    # when
    with transaction.atomic():
        claimed = keys_reserve(line=line)
    # then
    assert claimed == oldest
    assert list(CardKey.objects.filter(order_line=line).values_list("status", flat=True)) == [CardKeyStatus.RESERVED] * 2


def test_short_reserve_claims_nothing(make_product, make_unpaid_order):
    # given
    product = make_product(keys=2)
    line = _line(make_unpaid_order, product, 3)
    # when
    with pytest.raises(KeysUnavailable) as short, transaction.atomic():
        keys_reserve(line=line)
    # then
    assert (short.value.wanted, short.value.claimed) == (3, 2)
    assert CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).count() == 2
    assert not CardKey.objects.filter(order_line=line).exists()


def test_database_refuses_a_reserved_key_without_an_order_line(make_product):
    # given
    product = make_product(keys=1)
    # when / then
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), transaction.atomic():
        CardKey.objects.filter(product=product).update(status=CardKeyStatus.RESERVED)
    assert CardKey.objects.get(product=product).status == CardKeyStatus.AVAILABLE
