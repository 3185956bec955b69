"""The export pages in Chinese, the file's headers in the language the export
was asked in, and the read-only list of every export (the audit)."""

import pytest
from django.conf import settings

from exports.models import Export, ExportStatus
from tests.exports.conftest import body, csv_rows

pytestmark = pytest.mark.django_db


def _in_chinese(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    return client


def _queued(user, **fields) -> Export:
    return Export.objects.create(user=user, actor=f"staff:{user.username}", kind="KEYS", format="CSV",
                                 status=ExportStatus.QUEUED, total=200, **fields)


def test_progress_page_and_its_status_in_chinese(admin_client, admin_user):
    # given
    export = _queued(admin_user, rows=50, filters={"which": "unsold"})
    Export.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING)
    client = _in_chinese(admin_client)
    # when
    page = client.get(f"/admin/exports/export/{export.pk}/progress/").content.decode()
    state = client.get(f"/admin/exports/export/{export.pk}/status/").json()
    # then
    assert '<html lang="zh-hans"' in page
    assert "已写入 50 / 200 行" in page
    assert "全部商品 · 未售卡密 · 任何日期 · 卡密打码" in page
    assert "只能由您本人下载一次" in page
    assert 'value="下载"' in page
    assert (state["percent"], state["message"], state["status_label"]) == (25, "已写入 50 / 200 行", "正在生成")


def test_export_form_in_chinese(admin_client):
    # when
    page = _in_chinese(admin_client).get("/admin/exports/export/new/orders/").content.decode()
    # then
    assert "<title>导出订单" in page
    assert "包含买家邮箱" in page
    assert "下单时间" in page


def test_file_headers_follow_the_language_the_export_was_asked_in(admin_client, make_product):
    # given
    make_product(keys=1)
    # when
    rows = csv_rows(body(_in_chinese(admin_client).post("/admin/exports/export/new/keys/",
                                                        {"format": "CSV", "which": "unsold"})))
    # then
    assert rows[0][:3] == ["卡密 ID", "商品", "状态"]
    assert Export.objects.get().language == "zh-hans"


def test_the_audit_list_shows_every_export_and_deletes_none(admin_client, admin_user, staff_client):
    # given: two people's exports
    clerk = staff_client("inventory.view_cardkey").user
    mine = _queued(admin_user, plaintext=True, filters={"which": "sold"})
    theirs = _queued(clerk)
    # when
    page = admin_client.get("/admin/exports/export/").content.decode()
    # then
    assert f'href="/admin/exports/export/{mine.pk}/change/"' in page
    assert f'href="/admin/exports/export/{theirs.pk}/change/"' in page
    assert "staff:clerk" in page and "staff:admin" in page
    assert 'href="/admin/exports/export/new/orders/"' in page
    assert "delete_selected" not in page
    assert admin_client.post(f"/admin/exports/export/{mine.pk}/delete/").status_code == 403
    record = admin_client.get(f"/admin/exports/export/{mine.pk}/change/")
    assert record.status_code == 200 and "staff:admin" in record.content.decode()
    assert Export.objects.count() == 2


def test_someone_elses_progress_page_is_not_found(admin_client, staff_client):
    # given
    clerk = staff_client("inventory.view_cardkey")
    export = _queued(clerk.user)
    # when / then: not even the owner of the shop sees another user's file
    assert admin_client.get(f"/admin/exports/export/{export.pk}/progress/").status_code == 404
    assert clerk.get(f"/admin/exports/export/{export.pk}/progress/").status_code == 200


def test_progress_page_says_what_was_asked_for(admin_client, admin_user, make_product):
    # given
    product = make_product(name="Gift Card")
    export = Export.objects.create(
        user=admin_user, actor="staff:admin", kind="ORDERS", format="XLSX", status=ExportStatus.QUEUED, total=9,
        filters={"date_field": "paid", "date_from": "2026-11-01", "date_to": None, "statuses": ["PAID", "DELIVERED"],
                 "product": product.pk, "include_email": False},
    )
    # when
    page = admin_client.get(f"/admin/exports/export/{export.pk}/progress/").content.decode()
    # then
    assert "Gift Card · paid: 2026-11-01 – … · Paid, Delivered · without the buyer&#x27;s email" in page
    assert f"Export #{export.pk}: Orders, Excel (XLSX)" in page
