"""Key stock under the product's rules: dedupe, validation, sealing, rotation, batches."""

import base64
import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from inventory import sealing
from inventory.models import CardKey, CardKeyStatus, ImportBatch, KeyAuditEvent, KeyPolicy
from inventory.services import ImportIssue, import_batch_void, key_entries, keys_import

pytestmark = pytest.mark.django_db


def _import(product, text: str, **kwargs):
    return keys_import(product=product, source="test", entries=key_entries(text.splitlines(), **kwargs))


def test_policy_rules_decide_duplicates_but_the_key_is_kept_as_imported(make_product):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, casefold=True, strip_separators="- ", fold_confusables=True)
    # when
    report = _import(product, "  abcd-efgh-1jk0  \nABCD EFGH IJKO\nABCDEFGHLJKO\nWXYZ-0000")
    # then
    assert (report.added, report.duplicates) == (2, 2)
    assert report.issues == [
        ImportIssue(2, "DUPLICATE_IN_FILE", "same key as line 1"),
        ImportIssue(3, "DUPLICATE_IN_FILE", "same key as line 1"),
    ]
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == ["WXYZ-0000", "abcd-efgh-1jk0"]


def test_invalid_keys_are_reported_with_line_and_reason_and_not_added(make_product):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$")
    # when
    report = _import(product, "ABCD-EFGH-JKLM\nABCD-EFGH-JK\n\nABCDE-FGH-JKLM")
    # then
    assert (report.lines, report.added, report.invalid, report.blank) == (4, 1, 2, 1)
    assert report.issues == [
        ImportIssue(2, "INVALID", "too short: 12 characters, the format needs more"),
        ImportIssue(4, "INVALID", "character 5 ('E') is not allowed there"),
    ]
    batch = ImportBatch.objects.get(pk=report.batch_id)
    assert (batch.lines, batch.added, batch.invalid, batch.blank, batch.duplicates) == (4, 1, 2, 1, 0)


def test_the_format_applies_to_the_key_as_compared_after_folding(make_product):
    # given: a format without separators or lower case, both folded away by the policy
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"VPN[A-Z0-9]{12}", casefold=True, strip_separators="-")
    # when
    report = _import(product, "VPN-AAAA-BBBB-CCCC\nvpn-dddd-eeee-ffff\nVPN-AAAA-BBBB-CC#C")
    # then: the hint points at the character as the owner typed it
    assert (report.lines, report.added, report.invalid) == (3, 2, 1)
    assert report.issues == [ImportIssue(3, "INVALID", "character 17 ('#') is not allowed there")]
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == [
        "VPN-AAAA-BBBB-CCCC", "vpn-dddd-eeee-ffff"
    ]


def test_a_format_written_with_its_separators_still_accepts_keys_as_typed(make_product):
    # given: the format spells the dashes the policy ignores when comparing
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z]{4}-[0-9]{4}$", strip_separators="-")
    # when
    report = _import(product, "ABCD-1234\nABCD-12#4")
    # then
    assert (report.added, report.invalid) == (1, 1)
    assert report.issues == [ImportIssue(2, "INVALID", "character 8 ('#') is not allowed there")]


def test_custom_delimiter_splits_lines(make_product):
    # given
    product = make_product()
    # when
    report = _import(product, "K1;K2;\nK3;K1", delimiter=";")
    # then
    assert (report.added, report.duplicates, report.blank) == (3, 1, 1)
    assert report.issues == [ImportIssue(2, "DUPLICATE_IN_FILE", "same key as line 1")]


def test_a_ciphertext_moved_to_another_product_does_not_open(make_product):
    # given
    first, second = make_product(keys=1), make_product()
    key = CardKey.objects.get(product=first)
    # when / then
    with pytest.raises(sealing.SealError):
        sealing.secret_open(bytes(key.secret_sealed), product_id=second.pk)
    tampered = bytearray(key.secret_sealed)
    tampered[-1] ^= 1
    with pytest.raises(sealing.SealError):
        sealing.secret_open(bytes(tampered), product_id=first.pk)


def test_rotation_reseals_under_the_new_key_and_old_key_can_then_go(make_product, settings):
    # given: keys sealed under the old key
    product = make_product(keys=3)
    old = settings.KEY_ENCRYPTION_KEYS[0]
    new = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings.KEY_ENCRYPTION_KEYS = [new, old]
    # when
    out = StringIO()
    call_command("rotate_keys", "--batch-size", "2", stdout=out)
    # then
    assert out.getvalue().strip() == (
        "3 of 3 keys re-sealed under the primary key\n0 payment methods' credentials re-sealed under the primary key"
        "\n0 manual orders' answers re-sealed under the primary key")
    settings.KEY_ENCRYPTION_KEYS = [new]
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == [
        f"{product.slug.upper()}-KEY-{i:05d}" for i in range(3)
    ]
    settings.KEY_ENCRYPTION_KEYS = [old]
    with pytest.raises(sealing.SealError, match="no longer in KEY_ENCRYPTION_KEYS"):
        CardKey.objects.filter(product=product).first().secret


def test_raw_column_of_an_import_holds_no_plaintext(make_product):
    # given
    product = make_product()
    _import(product, "PLAINTEXT-CANARY-1234")
    # when
    with connection.cursor() as cursor:
        cursor.execute("SELECT encode(secret_sealed, 'escape'), encode(secret_sealed, 'hex') FROM inventory_cardkey")
        escaped, hexed = cursor.fetchone()
    # then
    assert "CANARY" not in escaped and "PLAINTEXT" not in escaped
    assert "CANARY".encode().hex() not in hexed


def test_voiding_a_batch_removes_only_its_unsold_keys(make_product, make_unpaid_order, client,
                                                      django_capture_on_commit_callbacks):
    # given
    from tests.conftest import NOTIFY_URL, sandbox_notice

    product = make_product()
    batch_id = _import(product, "A1\nA2\nA3").batch_id
    other_batch = _import(product, "B1").batch_id
    order = make_unpaid_order(product=product)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))  # sells A1
    # when
    voided = import_batch_void(batch_id=batch_id, actor="owner")
    # then
    assert voided == 2
    statuses = dict(CardKey.objects.filter(product=product).values_list("import_line", "status").filter(batch_id=batch_id))
    assert statuses == {1: CardKeyStatus.DELIVERED, 2: CardKeyStatus.VOID, 3: CardKeyStatus.VOID}
    assert CardKey.objects.get(batch_id=other_batch).status == CardKeyStatus.AVAILABLE
    batch = ImportBatch.objects.get(pk=batch_id)
    assert batch.voided_at is not None and batch.voided_keys == 2
    assert KeyAuditEvent.objects.filter(action="VOIDED", actor="owner").count() == 2
    assert set(CardKey.objects.filter(status=CardKeyStatus.VOID).values_list("void_reason", flat=True)) == {
        f"import #{batch_id} voided"
    }
