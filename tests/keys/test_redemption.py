"""inventory.redemption: matching a typed key, the outcomes, redeeming once, reverting."""

import threading

import pytest
from django.db import connection

from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent, KeyPolicy, KeyRedemption
from inventory.redemption import (
    RedemptionStateError,
    key_check,
    key_redeem,
    key_redemption_revert,
    redeemer_mask,
)
from inventory.services import keys_import, keys_void

pytestmark = pytest.mark.django_db


def test_a_sold_key_is_valid(make_product, sell):
    # given
    product = make_product(keys=2)
    key = sell(product)
    # when
    result = key_check(text="PRODUCT-1-KEY-00000", product_ids=[product.pk])
    # then
    assert (result.code, result.valid, result.card_key.pk) == ("VALID", True, key.pk)


def test_typed_key_is_matched_through_the_policy(make_product, sell):
    # given: a product whose keys ignore case, dashes, spaces and 0/O 1/I/L
    product = make_product()
    KeyPolicy.objects.create(product=product, casefold=True, strip_separators="- ", fold_confusables=True)
    keys_import(product=product, source="test", entries=[(1, "ABCD-1O2I-L0OP")])
    key = sell(product)
    # when
    result = key_check(text="  abcd lo2l 1oo-p ", product_ids=[product.pk])
    # then
    assert (result.code, result.card_key.pk) == ("VALID", key.pk)


def test_each_product_in_scope_is_tried_with_its_own_rules(make_product, sell):
    # given: product a folds case, product b does not; the key is in b
    a, b = make_product(keys=1), make_product(keys=1)
    KeyPolicy.objects.create(product=a, casefold=True)
    key = sell(b)
    # when
    exact = key_check(text="PRODUCT-2-KEY-00000", product_ids=[a.pk, b.pk])
    lower = key_check(text="product-2-key-00000", product_ids=[a.pk, b.pk])
    # then
    assert (exact.code, exact.card_key.pk) == ("VALID", key.pk)
    assert (lower.code, lower.card_key) == ("NOT_FOUND", None)


def test_a_key_outside_the_scope_is_not_found(make_product, sell):
    # given
    a, b = make_product(keys=1), make_product(keys=1)
    sell(b)
    # when
    result = key_check(text="PRODUCT-2-KEY-00000", product_ids=[a.pk])
    # then
    assert (result.code, result.card_key) == ("NOT_FOUND", None)


def test_a_key_in_stock_or_reserved_is_not_sold(make_product):
    # given
    product = make_product(keys=1)
    # when
    result = key_check(text="PRODUCT-1-KEY-00000", product_ids=[product.pk])
    # then
    assert (result.code, result.valid) == ("NOT_SOLD", False)


def test_a_voided_key_is_void(make_product):
    # given
    product = make_product(keys=1)
    keys_void(key_ids=CardKey.objects.values_list("pk", flat=True), reason="leak", actor="owner")
    # when
    result = key_check(text="PRODUCT-1-KEY-00000", product_ids=[product.pk])
    # then
    assert result.code == "VOID"


def test_a_typo_against_the_format_gets_a_position_hint(make_product):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z]{4}-[0-9]{4}$")
    # when
    result = key_check(text="ABCD-12#4", product_ids=[product.pk])
    short = key_check(text="ABCD-12", product_ids=[product.pk])
    # then
    assert (result.code, result.position, result.hint) == (
        "FORMAT_INVALID", 8, "character 8 ('#') is not allowed there"
    )
    assert (short.code, short.position, short.hint) == (
        "FORMAT_INVALID", None, "too short: 7 characters, the format needs more"
    )


def test_a_well_formed_unknown_key_is_not_found_and_flagged_well_formed(make_product):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z]{4}-[0-9]{4}$")
    # when
    result = key_check(text="ABCD-1234", product_ids=[product.pk])
    # then
    assert (result.code, result.format_ok) == ("NOT_FOUND", True)


def test_redeem_then_the_key_is_already_redeemed(make_product, sell):
    # given
    product = make_product(keys=1)
    key = sell(product)
    # when
    redeemed = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1",
                          redeemer="player-4242", actor="api:test", ip="203.0.113.9")
    again = key_check(text="PRODUCT-1-KEY-00000", product_ids=[product.pk])
    # then
    assert (redeemed.code, redeemed.replayed) == ("VALID", False)
    assert (again.code, again.redemption.pk, again.redemption.redeemer) == (
        "ALREADY_REDEEMED", redeemed.redemption.pk, "player-4242"
    )
    event = KeyAuditEvent.objects.get(card_key=key, action="REDEEMED")
    assert (event.actor, event.ip, event.detail) == ("api:test", "203.0.113.9", "redemption r-1")


def test_redeem_is_idempotent_per_redemption_id(make_product, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    first = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    # when
    retry = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    # then
    assert (retry.code, retry.replayed, retry.redemption.pk) == ("VALID", True, first.redemption.pk)
    assert KeyRedemption.objects.count() == 1
    assert KeyAuditEvent.objects.filter(action="REDEEMED").count() == 1


def test_a_second_redemption_id_is_refused_and_changes_nothing(make_product, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    first = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    # when
    other = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-2", actor="api")
    # then
    assert (other.code, other.redemption.pk) == ("ALREADY_REDEEMED", first.redemption.pk)
    assert list(KeyRedemption.objects.values_list("redemption_id", flat=True)) == ["r-1"]
    assert KeyAuditEvent.objects.filter(action="REDEEMED").count() == 1


@pytest.mark.parametrize("state", ["in stock", "void"])
def test_an_unsold_or_void_key_cannot_be_redeemed(make_product, state):
    # given
    product = make_product(keys=1)
    if state == "void":
        keys_void(key_ids=CardKey.objects.values_list("pk", flat=True), reason="leak", actor="owner")
    # when
    result = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    # then
    assert result.code == {"in stock": "NOT_SOLD", "void": "VOID"}[state]
    assert KeyRedemption.objects.count() == 0
    assert KeyAuditEvent.objects.filter(action="REDEEMED").count() == 0


def test_staff_revert_frees_the_key_for_a_new_redemption(make_product, sell):
    # given
    product = make_product(keys=1)
    key = sell(product)
    first = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    # when
    reverted = key_redemption_revert(redemption_pk=first.redemption.pk, reason="refunded in game",
                                     actor="staff:alice", ip="192.0.2.1")
    check = key_check(text="PRODUCT-1-KEY-00000", product_ids=[product.pk])
    second = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-2", actor="api")
    # then
    assert (reverted.reverted_by, reverted.revert_reason) == ("staff:alice", "refunded in game")
    assert reverted.reverted_at is not None
    assert check.code == "VALID"
    assert (second.code, second.replayed) == ("VALID", False)
    assert list(KeyAuditEvent.objects.filter(card_key=key, action__in=["REDEEMED", "REDEMPTION_REVERTED"])
                .order_by("id").values_list("action", "actor", "ip", "detail")) == [
        ("REDEEMED", "api", None, "redemption r-1"),
        ("REDEMPTION_REVERTED", "staff:alice", "192.0.2.1", "redemption r-1: refunded in game"),
        ("REDEEMED", "api", None, "redemption r-2"),
    ]


def test_reverting_twice_or_without_a_reason_is_refused(make_product, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    first = key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    key_redemption_revert(redemption_pk=first.redemption.pk, reason="mistake", actor="staff:alice")
    # when
    with pytest.raises(RedemptionStateError) as twice:
        key_redemption_revert(redemption_pk=first.redemption.pk, reason="again", actor="staff:bob")
    with pytest.raises(RedemptionStateError) as no_reason:
        key_redemption_revert(redemption_pk=first.redemption.pk, reason="  ", actor="staff:bob")
    # then
    assert (twice.value.code, no_reason.value.code) == ("REDEMPTION_NOT_LIVE", "REASON_REQUIRED")
    assert KeyRedemption.objects.get().reverted_by == "staff:alice"
    assert KeyAuditEvent.objects.filter(action="REDEMPTION_REVERTED").count() == 1


def test_redeemer_is_masked():
    assert [redeemer_mask(r) for r in ["", "ab", "abcd", "player-4242"]] == ["", "a***", "a***", "pl***42"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_of_one_key_let_exactly_one_win(make_product, sell):
    # given
    product = make_product(keys=1)
    key = sell(product)
    barrier = threading.Barrier(6)
    results = []

    def redeem(n):
        try:
            barrier.wait()
            results.append(key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk],
                                      redemption_id=f"r-{n}", actor="api").code)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert sorted(results) == ["ALREADY_REDEEMED"] * 5 + ["VALID"]
    assert KeyRedemption.objects.filter(card_key=key).count() == 1
    assert CardKey.objects.get(pk=key.pk).status == CardKeyStatus.DELIVERED
