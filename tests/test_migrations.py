from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as missing:  # makemigrations --check exits 1 when one is missing
        pytest.fail(f"missing migrations (exit {missing.code}):\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_keys_in_stock_before_the_loose_fingerprint_get_one(client, make_product):
    # given: a key as 0005 finds it (no loose fingerprint yet) on a product without a policy
    import importlib

    from django.apps import apps

    from inventory.models import CardKey
    from inventory.redemption import key_check
    from inventory.services import keys_import

    product = make_product()
    keys_import(product=product, source="test", entries=[(1, "ABCD-EFGH-1234")])
    CardKey.objects.update(loose_fingerprint="")
    assert key_check(text="abcd efgh1234", product_ids=[product.pk], loose=True).code == "NOT_FOUND"
    migration = importlib.import_module("inventory.migrations.0005_cardkey_loose_fingerprint")
    # when
    migration.loose_fingerprints_fill(apps, None)
    # then
    found = key_check(text="abcd efgh1234", product_ids=[product.pk], loose=True)
    assert (found.code, found.card_key.secret) == ("NOT_SOLD", "ABCD-EFGH-1234")
