"""Exporting card keys from the admin: unsold, or sold with their order numbers;
masked for whoever may see the key list, plaintext only with
``inventory.export_cardkey`` (and never by crafting the form); every export
recorded, and a plaintext one in each key's audit log before it goes out."""

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from exports.models import Export, ExportStatus
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from tests.exports.conftest import body, csv_rows, xlsx_rows

pytestmark = pytest.mark.django_db

URL = "/admin/exports/export/new/keys/"
HEADER = ["Key id", "Product", "Status", "Order number", "Sold at", "Delivered at", "Imported at", "Import batch",
          "Key (masked)"]


@pytest.fixture
def stock(make_product, make_unpaid_order, pay):
    """"gift": 4 keys, one sold on a paid order; "game": 2 keys, none sold."""
    gift = make_product(keys=4, slug="gift")
    game = make_product(keys=2, slug="game")
    order = pay(make_unpaid_order(product=gift))
    return {"gift": gift, "game": game, "order": order}


def _ids(**filters) -> list[int]:
    return list(CardKey.objects.filter(**filters).order_by("id").values_list("pk", flat=True))


def test_unsold_keys_masked_for_staff_who_may_only_see_the_list(staff_client, stock):
    # given
    clerk = staff_client("inventory.view_cardkey")
    # when
    response = clerk.post(URL, {"format": "CSV", "which": "unsold"})
    # then
    rows = csv_rows(body(response))
    assert rows[0] == HEADER
    unsold = CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).order_by("id")
    assert [(int(r[0]), r[1], r[2], r[3], r[8]) for r in rows[1:]] == [
        (k.pk, k.product.slug, "AVAILABLE", "", k.secret_masked) for k in unsold]
    assert len(rows) == 1 + 5
    data = body(clerk.post(URL, {"format": "CSV", "which": "unsold"}))
    assert not any(k.secret.encode() in data for k in CardKey.objects.all())
    assert KeyAuditEvent.objects.filter(action="EXPORTED").count() == 0


def test_the_form_offers_plaintext_only_with_the_permission(staff_client, stock):
    # given
    clerk = staff_client("inventory.view_cardkey", username="clerk")
    owner = staff_client("inventory.view_cardkey", "inventory.export_cardkey", username="owner")
    # when
    clerk_form = clerk.get(URL).content.decode()
    owner_form = owner.get(URL).content.decode()
    # then
    assert 'name="plaintext"' not in clerk_form
    assert 'name="plaintext"' in owner_form


def test_staff_without_the_permission_cannot_craft_a_plaintext_export(staff_client, stock):
    # given
    clerk = staff_client("inventory.view_cardkey")
    # when: the form posted with the box it never showed
    response = clerk.post(URL, {"format": "CSV", "which": "unsold", "plaintext": "on"})
    # then
    assert response.status_code == 403
    assert Export.objects.count() == 0
    assert KeyAuditEvent.objects.filter(action="EXPORTED").count() == 0


def test_staff_without_the_key_list_cannot_export_keys(staff_client, stock):
    # given
    clerk = staff_client("shop.view_order")
    # when
    response = clerk.post(URL, {"format": "CSV", "which": "unsold"})
    # then
    assert response.status_code == 403


def test_sold_keys_in_plaintext_with_their_order_numbers_audited_key_by_key(staff_client, stock):
    # given
    owner = staff_client("inventory.view_cardkey", "inventory.export_cardkey", username="owner")
    sold = CardKey.objects.get(status=CardKeyStatus.DELIVERED)
    # when
    response = owner.post(URL, {"format": "XLSX", "which": "sold", "plaintext": "on"})
    # then
    rows = xlsx_rows(body(response))
    assert list(rows[0]) == [*HEADER, "Key"]
    assert rows[1][:4] == (sold.pk, "gift", "DELIVERED", stock["order"].order_no)
    assert rows[1][8:] == (sold.secret_masked, sold.secret)
    assert len(rows) == 2
    export = Export.objects.get()
    assert (export.actor, export.kind, export.plaintext, export.rows, export.filters["which"]) == (
        "staff:owner", "KEYS", True, 1, "sold")
    audit = KeyAuditEvent.objects.get(action="EXPORTED")
    assert (audit.card_key_id, audit.actor, audit.ip, audit.detail) == (
        sold.pk, "staff:owner", "127.0.0.1", f"export #{export.pk}")


def test_product_and_date_filters(admin_client, stock):
    # given: the game's keys were imported in 2025
    CardKey.objects.filter(product=stock["game"]).update(created_at="2025-06-01T12:00:00+08:00")
    # when
    in_2025 = csv_rows(body(admin_client.post(URL, {"format": "CSV", "which": "unsold", "date_from": "2025-01-01",
                                                   "date_to": "2025-12-31"})))
    gift = csv_rows(body(admin_client.post(URL, {"format": "CSV", "which": "unsold", "product": stock["gift"].pk})))
    # then
    assert [int(r[0]) for r in in_2025[1:]] == _ids(product=stock["game"])
    assert [int(r[0]) for r in gift[1:]] == _ids(product=stock["gift"], status=CardKeyStatus.AVAILABLE)


def test_a_day_range_backwards_is_refused(admin_client, stock):
    # when
    response = admin_client.post(URL, {"format": "CSV", "which": "unsold", "date_from": "2026-02-01",
                                       "date_to": "2026-01-01"})
    # then
    assert response.status_code == 200
    assert "The last day is before the first." in response.content.decode()
    assert Export.objects.count() == 0


def test_export_button_carries_the_key_lists_filters(admin_client, stock):
    # given
    query = {"status__exact": "DELIVERED", "product__id__exact": str(stock["gift"].pk)}
    changelist = admin_client.get("/admin/inventory/cardkey/", query).content.decode()
    assert 'id="kd-export-link" href="/admin/exports/export/new/keys/?status__exact=DELIVERED' in changelist
    # when
    form = admin_client.get(URL, query).context["form"]
    # then
    assert form.initial == {"which": "sold", "product": stock["gift"].pk}


def test_a_plaintext_stream_writes_one_audit_insert_per_chunk_not_per_key(admin_client, make_product, monkeypatch):
    # given: 12 keys, read 5 at a time
    monkeypatch.setattr("exports.services.CHUNK_ROWS", 5)
    make_product(keys=12)
    # when
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.post(URL, {"format": "CSV", "which": "unsold", "plaintext": "on"})
        assert isinstance(response, StreamingHttpResponse)
        # nothing was read or audited before the file is read
        assert KeyAuditEvent.objects.count() == 0
        rows = csv_rows(body(response))
    # then
    assert len(rows) == 13
    audit_inserts = [q for q in captured.captured_queries if q["sql"].startswith('INSERT INTO "inventory_keyauditevent"')]
    assert len(audit_inserts) == 3
    assert KeyAuditEvent.objects.filter(action="EXPORTED").count() == 12
    assert Export.objects.get().status == ExportStatus.STREAMED
