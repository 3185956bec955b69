"""Concurrent claims with SKIP LOCKED: claims that are all open at once take
different keys without waiting for each other, and never more than the stock.

Every claimer keeps its transaction open until all of them have claimed, so
the claims really overlap (with plain FOR UPDATE the second one would wait for
the first to commit, and the barrier would time out)."""

import threading
from collections import Counter

import pytest
from django.db import connection, transaction

from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from inventory.services import ClaimRequest, KeysUnavailable, keys_claim, keys_reserve, line_claim

pytestmark = pytest.mark.django_db(transaction=True)


def _claim_all_at_once(lines, claim_one=None) -> tuple[dict, list[BaseException]]:
    """Claim for every line (or with ``claim_one(line)``, for every item of
    ``lines``) in its own thread and transaction, all open at once; return
    {line id: claimed ids or the KeysUnavailable} and errors."""
    start = threading.Barrier(len(lines))
    held = threading.Barrier(len(lines))
    outcomes: dict = {}
    errors: list[BaseException] = []

    def claim(line) -> None:
        try:
            start.wait(timeout=30)
            with transaction.atomic():
                if claim_one is not None:
                    outcomes.update(claim_one(line))
                else:
                    try:
                        outcomes[line.pk] = keys_reserve(line=line)
                    except KeysUnavailable as short:
                        outcomes[line.pk] = short
                held.wait(timeout=10)  # commit only once every claim has been made
        except BaseException as exc:  # surfaced by the test: a thread must not fail silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(line,)) for line in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes, errors


def test_overlapping_claims_take_different_keys(settings, make_product, make_unpaid_order):
    # given
    settings.INVENTORY_CLAIM_SKIP_LOCKED = True
    product = make_product(keys=30)
    lines = [make_unpaid_order(product=product, quantity=2, email=f"b{i}@example.com").lines.get()
             for i in range(12)]
    # when
    outcomes, errors = _claim_all_at_once(lines)
    # then
    assert errors == []
    assert sorted(outcomes) == sorted(line.pk for line in lines)
    assert all(isinstance(ids, list) and len(ids) == 2 for ids in outcomes.values())
    claimed = [key_id for ids in outcomes.values() for key_id in ids]
    assert len(set(claimed)) == 24
    # the database agrees: each line holds exactly the two keys it was given
    for line in lines:
        assert sorted(CardKey.objects.filter(order_line=line, status=CardKeyStatus.RESERVED)
                      .values_list("id", flat=True)) == outcomes[line.pk]
    assert Counter(CardKey.objects.filter(product=product).values_list("status", flat=True)) == {
        CardKeyStatus.RESERVED: 24, CardKeyStatus.AVAILABLE: 6,
    }
    sold = KeyAuditEvent.objects.filter(action=KeyAuditEvent.Action.SOLD).values_list("card_key_id", flat=True)
    assert sorted(sold) == sorted(claimed)


def test_more_overlapping_claims_than_keys_never_oversell(settings, make_product, make_unpaid_order):
    # given
    settings.INVENTORY_CLAIM_SKIP_LOCKED = True
    product = make_product(keys=10)
    lines = [make_unpaid_order(product=product, email=f"b{i}@example.com").lines.get() for i in range(15)]
    # when
    outcomes, errors = _claim_all_at_once(lines)
    # then
    assert errors == []
    won = {line_id: ids for line_id, ids in outcomes.items() if isinstance(ids, list)}
    short = [line_id for line_id, outcome in outcomes.items() if isinstance(outcome, KeysUnavailable)]
    assert (len(won), len(short)) == (10, 5)
    assert all(len(ids) == 1 for ids in won.values())
    assert len({ids[0] for ids in won.values()}) == 10
    assert sorted(CardKey.objects.filter(product=product).values_list("order_line_id", flat=True)) == sorted(won)
    assert not CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).exists()
    # a short claim changed nothing: no key and no audit row for its line
    assert not CardKey.objects.filter(order_line_id__in=short).exists()
    assert KeyAuditEvent.objects.filter(action=KeyAuditEvent.Action.SOLD).count() == 10


def test_overlapping_batch_claims_take_different_keys_and_never_oversell(settings, make_product, make_unpaid_order):
    # given: three appliers' batches of five one-key lines, open at once, for twelve keys
    settings.INVENTORY_CLAIM_SKIP_LOCKED = True
    product = make_product(keys=12)
    lines = [make_unpaid_order(product=product, email=f"b{i}@example.com").lines.get() for i in range(15)]
    batches = [lines[i:i + 5] for i in range(0, 15, 5)]

    def claim_batch(batch):
        outcomes = keys_claim(requests=[ClaimRequest(lines=[line_claim(line)]) for line in batch])
        return {line.pk: outcome.keys[line.pk] if outcome.short is None else "short"
                for line, outcome in zip(batch, outcomes)}

    # when
    outcomes, errors = _claim_all_at_once(batches, claim_one=claim_batch)
    # then: twelve lines served, one key each, none twice; three short, holding nothing
    assert errors == []
    won = {line_id: ids for line_id, ids in outcomes.items() if ids != "short"}
    assert (len(won), len(outcomes)) == (12, 15)
    assert len({ids[0] for ids in won.values()}) == 12 and all(len(ids) == 1 for ids in won.values())
    assert sorted(CardKey.objects.filter(product=product, status=CardKeyStatus.DELIVERED)
                  .values_list("order_line_id", flat=True)) == sorted(won)
    assert KeyAuditEvent.objects.filter(action=KeyAuditEvent.Action.SOLD).count() == 12
