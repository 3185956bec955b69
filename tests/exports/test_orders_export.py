"""Exporting orders from the admin: the columns an owner needs, the filters
(dates, status, product), the buyer's email only when asked, never a key,
the changelist's filters carried over, and who may export."""

from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exports.models import Export, ExportStatus
from inventory.models import CardKey
from shop.models import Order
from tests.exports.conftest import body, csv_rows, xlsx_rows

pytestmark = pytest.mark.django_db

URL = "/admin/exports/export/new/orders/"
HEADER = ["Order number", "Placed at", "Paid at", "Delivered at", "Status", "Product", "Product name", "Quantity",
          "Unit price", "Line amount", "Order amount", "Discount", "Currency", "Payment method", "Trade number",
          "Buyer email", "Coupon", "Delivery"]


def _form(**fields) -> dict:
    return {"format": "CSV", "date_field": "created", "include_email": "on", **fields}


def _at(day: int) -> datetime:
    return timezone.make_aware(datetime(2026, 11, day, 12, 0))


@pytest.fixture
def orders(make_product, make_unpaid_order, pay):
    """Three paid orders of "gift" placed on 1, 2 and 3 November, one unpaid of
    "game" placed on 2 November (its buyer typed a formula as an email)."""
    gift = make_product(keys=5, slug="gift", name="Gift Card", price="25.00")
    game = make_product(keys=5, slug="game", name="游戏卡", price="9.90")
    paid = [pay(make_unpaid_order(product=gift, email=f"buyer{i}@example.com")) for i in range(3)]
    unpaid = make_unpaid_order(product=game, quantity=2, email="=cmd@example.com")
    for day, order in zip([1, 2, 3, 2], [*paid, unpaid], strict=True):
        Order.objects.filter(pk=order.pk).update(created_at=_at(day))
    return {"paid": paid, "unpaid": unpaid, "gift": gift, "game": game}


def test_csv_has_the_owners_columns_one_row_per_order(admin_client, orders):
    # when
    response = admin_client.post(URL, _form())
    # then
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="orders-')
    rows = csv_rows(body(response))
    assert rows[0] == HEADER
    first = Order.objects.get(pk=orders["paid"][0].pk)
    deliveries = " ".join(f"{d.channel}:{d.status}" for d in first.deliveries.order_by("channel"))
    assert rows[1] == [
        first.order_no, "2026-11-01 12:00:00", timezone.localtime(first.paid_at).strftime("%Y-%m-%d %H:%M:%S"),
        "", first.status, "gift", "Gift Card", "1", "25.00", "25.00", "25.00", "0.00", "CNY", "sandbox",
        first.payments.get().external_id, "buyer0@example.com", "", deliveries,
    ]
    assert deliveries.startswith("EMAIL:PENDING INBOX:SENT")
    unpaid = orders["unpaid"]
    # a buyer's formula is written as text, never run by a spreadsheet
    assert rows[4][:8] == [unpaid.order_no, "2026-11-02 12:00:00", "", "", "PENDING_PAYMENT", "game", "游戏卡", "2"]
    assert rows[4][15] == "'=cmd@example.com"
    assert len(rows) == 5


def test_no_key_ever_appears_in_an_order_export(admin_client, orders):
    # when
    data = body(admin_client.post(URL, _form()))
    # then
    sold = [key.secret for key in CardKey.objects.filter(order_line__isnull=False)]
    assert len(sold) == 3
    assert not any(secret.encode() in data for secret in sold)


def test_filters_by_dates_status_and_product(admin_client, orders):
    # when: placed on 2 or 3 November
    by_dates = csv_rows(body(admin_client.post(URL, _form(date_from="2026-11-02", date_to="2026-11-03"))))
    # then
    assert [row[0] for row in by_dates[1:]] == [o.order_no for o in [*orders["paid"][1:], orders["unpaid"]]]

    # when: only unpaid ones
    by_status = csv_rows(body(admin_client.post(URL, _form(statuses=["PENDING_PAYMENT"]))))
    # then
    assert [row[0] for row in by_status[1:]] == [orders["unpaid"].order_no]

    # when: one product, paid on any day (the unpaid order has no payment date)
    by_product = csv_rows(body(admin_client.post(URL, _form(product=orders["game"].pk, date_field="paid",
                                                           date_from="2000-01-01"))))
    # then
    assert by_product[1:] == []


def test_the_buyers_email_is_left_out_unless_asked_for(admin_client, orders):
    # when
    rows = csv_rows(body(admin_client.post(URL, {"format": "CSV", "date_field": "created"})))
    # then
    assert "Buyer email" not in rows[0]
    assert not any("example.com" in cell for row in rows for cell in row)
    assert Export.objects.get().filters["include_email"] is False


def test_xlsx_reads_back_with_dates_and_amounts_as_numbers(admin_client, orders):
    # when
    response = admin_client.post(URL, _form(format="XLSX", statuses=["PENDING_PAYMENT"]))
    # then
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    rows = xlsx_rows(body(response))
    assert list(rows[0]) == HEADER
    unpaid = orders["unpaid"]
    assert rows[1][:12] == (unpaid.order_no, datetime(2026, 11, 2, 12, 0), None, None, "PENDING_PAYMENT", "game",
                            "游戏卡", 2, 9.9, 19.8, 19.8, 0)
    assert rows[1][15] == "=cmd@example.com"  # a string cell, not a formula
    assert len(rows) == 2


def test_every_export_is_recorded_with_who_what_and_how_many(admin_client, admin_user, orders):
    # when
    body(admin_client.post(URL, _form(statuses=["PENDING_PAYMENT", "DELIVERED"], date_from="2026-11-01")))
    # then
    export = Export.objects.get()
    assert (export.user, export.actor, export.ip, export.kind, export.format, export.plaintext) == (
        admin_user, "staff:admin", "127.0.0.1", "ORDERS", "CSV", False)
    assert export.filters == {"date_field": "created", "date_from": "2026-11-01", "date_to": None,
                              "statuses": ["DELIVERED", "PENDING_PAYMENT"], "product": None, "include_email": True}
    assert (export.status, export.total, export.rows) == (ExportStatus.STREAMED, 1, 1)
    assert LogEntry.objects.get().object_repr == str(export)


def test_export_button_carries_the_order_lists_filters(admin_client, orders):
    # given: the order list filtered to unpaid orders placed on one day
    start = timezone.make_aware(datetime(2026, 11, 2))
    query = {"status__exact": "PENDING_PAYMENT", "created_at__gte": str(start),
             "created_at__lt": str(start + timedelta(days=1))}
    changelist = admin_client.get("/admin/shop/order/", query).content.decode()
    assert 'id="kd-export-link" href="/admin/exports/export/new/orders/?status__exact=PENDING_PAYMENT' in changelist
    # when
    form = admin_client.get(URL, query).context["form"]
    # then: the same day, the same status
    assert form.initial == {"date_from": datetime(2026, 11, 2).date(), "date_to": datetime(2026, 11, 2).date(),
                            "statuses": ["PENDING_PAYMENT"]}


def test_staff_without_the_order_list_cannot_export_orders(staff_client, orders):
    # given
    clerk = staff_client("inventory.view_cardkey")
    # when
    response = clerk.post(URL, _form())
    # then
    assert response.status_code == 403
    assert Export.objects.count() == 0


def test_streaming_reads_the_rows_a_page_per_query(admin_client, make_product, make_unpaid_order, monkeypatch):
    # given: rows read 5 at a time
    monkeypatch.setattr("exports.services.CHUNK_ROWS", 5)
    product = make_product()
    for _ in range(6):
        make_unpaid_order(product=product)

    def queries_for_export() -> tuple[int, int]:
        ContentType.objects.clear_cache()  # the admin log looks it up once per process: both runs do
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.post(URL, _form())
            pieces = list(response.streaming_content)
        return len(captured), len(pieces)

    # when
    few = queries_for_export()
    for _ in range(12):
        make_unpaid_order(product=product)
    many = queries_for_export()
    # then: a page of 5 a query (6 rows: 2 pages, 18 rows: 4), never the whole set at once
    # (which psycopg would hold in memory where server-side cursors are off, behind PgBouncer);
    # the file came in pieces
    assert many[0] - few[0] == 4 - 2
    assert (few[1], many[1]) == (2 + 2, 2 + 4)
    assert Export.objects.order_by("id").last().rows == 18


def test_an_xlsx_of_more_rows_than_a_sheet_holds_is_refused_before_anything_is_read(admin_client, orders,
                                                                                   monkeypatch):
    # given: a sheet that holds 3 rows (Excel's holds 1,048,575)
    monkeypatch.setattr("exports.services.XLSX_MAX_ROWS", 3)
    # when
    response = admin_client.post(URL, _form(format="XLSX"))
    # then
    assert response.status_code == 200
    assert "More rows than a spreadsheet holds: choose CSV, or a narrower filter." in response.content.decode()
    assert Export.objects.count() == 0
