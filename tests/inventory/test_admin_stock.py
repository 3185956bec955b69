"""Owner actions on stock in the admin: import with a report, batch void,
replace, reveal — permission-gated and audited, never a key in a list
(exports: tests/exports/)."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile

from inventory.models import CardKey, CardKeyStatus, ImportBatch, KeyAuditEvent, KeyPolicy
from shop.models import OrderEventType, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db

IMPORT_URL = "/admin/inventory/importbatch/add/"
CARDKEYS_URL = "/admin/inventory/cardkey/"


def _staff(client, *perms) -> User:
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    for codename in ("view_cardkey", "change_cardkey", "view_importbatch", "change_importbatch", *perms):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return user


def test_paste_import_shows_the_per_line_report(admin_client, admin_user, make_product):
    # given
    product = make_product()
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z]{3}-\d{3}$")
    # when
    response = admin_client.post(IMPORT_URL, {
        "product": product.pk, "keys": "ABC-123\nABC-123\nabc-999\n\nXYZ-789", "delimiter": "newline",
    })
    # then
    content = response.content.decode()
    batch = ImportBatch.objects.get()
    assert f"Import #{batch.pk}: 2 added, 1 duplicate, 1 invalid, 1 blank (5 lines)" in content
    assert "same key as line 1" in content
    assert "character 1 (&#x27;a&#x27;) is not allowed there" in content
    assert "ABC-123" not in content.split("<form")[0]  # the report never echoes keys
    assert (batch.source, batch.created_by, batch.added) == ("admin paste", admin_user, 2)


def test_csv_upload_with_comma_delimiter(admin_client, make_product):
    # given
    product = make_product()
    upload = SimpleUploadedFile("keys.csv", "\ufeffK1,K2\nK3,K1\n".encode("utf-8"), content_type="text/csv")
    # when
    response = admin_client.post(IMPORT_URL, {"product": product.pk, "file": upload, "delimiter": "comma"})
    # then
    assert "3 added, 1 duplicate, 0 invalid, 0 blank (4 lines)" in response.content.decode()
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == ["K1", "K2", "K3"]
    assert ImportBatch.objects.get().source == "admin upload: keys.csv"


def test_import_refuses_other_file_types_and_empty_input(admin_client, make_product):
    product = make_product()
    exe = SimpleUploadedFile("keys.exe", b"K1")
    assert "Upload a .txt or .csv file." in admin_client.post(
        IMPORT_URL, {"product": product.pk, "file": exe, "delimiter": "newline"}).content.decode()
    assert "Paste keys or choose a file." in admin_client.post(
        IMPORT_URL, {"product": product.pk, "delimiter": "newline"}).content.decode()
    assert CardKey.objects.count() == 0


def test_import_needs_the_import_permission(client, make_product):
    # given
    product = make_product()
    _staff(client)
    # when
    response = client.post(IMPORT_URL, {"product": product.pk, "keys": "K1", "delimiter": "newline"})
    # then
    assert response.status_code == 403
    assert CardKey.objects.count() == 0


def test_reveal_needs_the_reveal_permission_and_is_audited(client, make_product):
    # given
    product = make_product(keys=1)
    key = CardKey.objects.get()
    _staff(client)
    selection = {"action": "reveal_keys", "_selected_action": [key.pk]}
    # when: without the permission
    denied = client.post(CARDKEYS_URL, selection, follow=True)
    # then
    assert f"{product.slug.upper()}-KEY-00000" not in denied.content.decode()
    # when: with it
    User.objects.get(username="clerk").user_permissions.add(Permission.objects.get(codename="reveal_cardkey"))
    shown = client.post(CARDKEYS_URL, selection, REMOTE_ADDR="198.51.100.7")
    # then
    assert f"{product.slug.upper()}-KEY-00000" in shown.content.decode()
    audit = KeyAuditEvent.objects.get()
    assert (audit.action, audit.actor, audit.ip) == ("REVEALED", "staff:clerk", "198.51.100.7")


def test_replace_action_swaps_a_delivered_key(admin_client, client, make_product, make_unpaid_order,
                                              django_capture_on_commit_callbacks):
    # given
    product = make_product(keys=2)
    order = make_unpaid_order(product=product)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    old = CardKey.objects.get(order_line__order=order)
    selection = {"action": "replace_on_order", "_selected_action": [old.pk]}
    # when
    response = admin_client.post(CARDKEYS_URL, {**selection, "apply": "1", "reason": "rejected by game"}, follow=True)
    # then
    assert "1 keys replaced." in response.content.decode()
    old.refresh_from_db()
    assert (old.status, old.void_reason) == (CardKeyStatus.VOID, "rejected by game")
    assert CardKey.objects.get(order_line__order=order, status=CardKeyStatus.DELIVERED).pk != old.pk
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert order.events.filter(type=OrderEventType.KEY_REPLACED, actor="staff:admin").count() == 1


def test_batch_void_action(admin_client, make_product):
    # given
    product = make_product(keys=2)
    batch = ImportBatch.objects.get(product=product)
    # when
    response = admin_client.post("/admin/inventory/importbatch/",
                                 {"action": "void_unsold", "_selected_action": [batch.pk]}, follow=True)
    # then
    assert "2 unsold keys voided." in response.content.decode()
    assert CardKey.objects.filter(status=CardKeyStatus.VOID).count() == 2


def test_key_policy_refuses_a_broken_format(admin_client, make_product):
    product = make_product()
    response = admin_client.post("/admin/inventory/keypolicy/add/", {
        "product": product.pk, "collapse_spaces": "on", "format_regex": "^[A-Z", "low_stock_threshold": "0",
        "strip_separators": "",
    })
    assert "not a valid regular expression" in response.content.decode()
    assert KeyPolicy.objects.count() == 0


def test_audit_log_lists_never_show_a_key(admin_client, make_product):
    # given
    product = make_product(keys=1)
    key = CardKey.objects.get()
    admin_client.post(CARDKEYS_URL, {"action": "reveal_keys", "_selected_action": [key.pk]})
    # when
    for url in ("/admin/inventory/keyauditevent/", "/admin/inventory/importbatch/", CARDKEYS_URL):
        response = admin_client.get(url)
        # then
        assert response.status_code == 200
        assert response.context["cl"].result_count == 1
        assert f"{product.slug.upper()}-KEY-00000" not in response.content.decode()
