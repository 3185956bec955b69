"""What an export reads: the rows a filter matches, in id order, and their columns.

Orders are exported one row per order line (an order has one line today; a
row per line stays right when it has more), keys one row per key. Both are
read in primary-key order, so a job can resume after the last id it wrote.
Buyer contact beyond the email the order list already shows (phone, IP,
device) and any key material are never in an order export.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from django.contrib.postgres.aggregates import StringAgg
from django.db.models import Case, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from delivery.models import Delivery
from exports.formats import MONEY, NUMBER, VERBATIM, WHEN, Column
from exports.models import ExportKind
from inventory import sealing
from inventory.models import CardKey, CardKeyStatus
from payments.models import Payment
from shop.models import OrderLine
from shop.project.paging import keyset_rows

UNSOLD, SOLD = "unsold", "sold"
SOLD_STATUSES = (CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED)
UNREADABLE = "(cannot be decrypted)"


def _day_start(value: str | None) -> datetime | None:
    # A day in the shop's time zone, as the admin's date filters read it.
    if not value:
        return None
    return timezone.make_aware(datetime.combine(date.fromisoformat(value), time.min))


def _date_range(queryset: QuerySet, field: str, filters: dict) -> QuerySet:
    start, end = _day_start(filters.get("date_from")), _day_start(filters.get("date_to"))
    if start:
        queryset = queryset.filter(**{f"{field}__gte": start})
    if end:  # the last day counts whole
        queryset = queryset.filter(**{f"{field}__lt": end + timedelta(days=1)})
    return queryset


def _orders(filters: dict) -> QuerySet:
    lines = OrderLine.objects.all()
    date_field = "order__paid_at" if filters.get("date_field") == "paid" else "order__created_at"
    lines = _date_range(lines, date_field, filters)
    if filters.get("statuses"):
        lines = lines.filter(order__status__in=filters["statuses"])
    if filters.get("product"):
        lines = lines.filter(product_id=filters["product"])
    return lines


def _keys(filters: dict) -> QuerySet:
    if filters.get("which") == SOLD:
        keys, date_field = CardKey.objects.filter(status__in=SOLD_STATUSES), "reserved_at"
    else:
        keys, date_field = CardKey.objects.filter(status=CardKeyStatus.AVAILABLE), "created_at"
    keys = _date_range(keys, date_field, filters)
    if filters.get("product"):
        keys = keys.filter(product_id=filters["product"])
    return keys


def export_count(*, kind: str, filters: dict) -> int:
    return (_orders if kind == ExportKind.ORDERS else _keys)(filters).count()


def export_columns(*, kind: str, filters: dict, plaintext: bool) -> list[Column]:
    """The header row, in the active language."""
    if kind == ExportKind.ORDERS:
        columns = [
            Column(_("Order number")), Column(_("Placed at"), WHEN), Column(_("Paid at"), WHEN),
            Column(_("Delivered at"), WHEN), Column(_("Status")), Column(_("Product")), Column(_("Product name")),
            Column(_("Quantity"), NUMBER), Column(_("Unit price"), MONEY), Column(_("Line amount"), MONEY),
            Column(_("Order amount"), MONEY), Column(_("Discount"), MONEY), Column(_("Currency")),
            Column(_("Payment method")), Column(_("Trade number")),
        ]
        if filters.get("include_email"):
            columns.append(Column(_("Buyer email")))
        return [*columns, Column(_("Coupon")), Column(_("Delivery"))]
    columns = [
        Column(_("Key id"), NUMBER), Column(_("Product")), Column(_("Status")), Column(_("Order number")),
        Column(_("Sold at"), WHEN), Column(_("Delivered at"), WHEN), Column(_("Imported at"), WHEN),
        Column(_("Import batch"), NUMBER), Column(_("Key (masked)"), VERBATIM),
    ]
    return [*columns, Column(_("Key"), VERBATIM)] if plaintext else columns


def _order_rows(filters: dict, queryset: QuerySet, limit: int | None, chunk_size: int) -> Iterator[tuple[int, list]]:
    payments = Payment.objects.filter(order_id=OuterRef("order_id")).order_by(
        F("succeeded_at").desc(nulls_last=True), "-id")
    deliveries = (
        Delivery.objects.filter(order_id=OuterRef("order_id")).order_by().values("order_id")
        .annotate(summary=StringAgg(Concat("channel", Value(":"), "status"), delimiter=" ", order_by="channel"))
        .values("summary")
    )
    fields = ("pk", "order__order_no", "order__created_at", "order__paid_at", "order__delivered_at",
              "order__status", "product__slug", "product_name", "quantity", "unit_price", "amount",
              "order__amount", "order__discount", "order__currency", "method", "trade_no", "order__email",
              "order__coupon_code", "delivery")
    rows = queryset.annotate(
        method=Subquery(payments.values("provider")[:1]), trade_no=Subquery(payments.values("external_id")[:1]),
        delivery=Subquery(deliveries),
        # a variant by its product's name and its own: "Membership · 90 days"
        product_name=Case(When(product__parent__isnull=True, then=F("product__name")),
                          default=Concat("product__parent__name", Value(" · "), "product__name")),
    ).values_list(*fields)
    email = bool(filters.get("include_email"))
    for pk, *values, email_value, coupon, delivery in keyset_rows(rows, chunk_size=chunk_size, limit=limit):
        yield pk, [*values, *([email_value] if email else []), coupon, delivery]


def _key_rows(plaintext: bool, queryset: QuerySet, limit: int | None, chunk_size: int) -> Iterator[tuple[int, list]]:
    rows = queryset.values_list("pk", "product__slug", "status", "order_line__order__order_no", "reserved_at",
                                "delivered_at", "created_at", "batch_id", "product_id", "secret_sealed")
    for pk, *values, product_id, sealed in keyset_rows(rows, chunk_size=chunk_size, limit=limit):
        # Opened as delivery opens it (inventory.sealing); only the masked
        # form leaves the server unless the export is of plaintext.
        try:
            secret = sealing.secret_open(bytes(sealed), product_id=product_id)
        except sealing.SealError:
            secret = None
        values.append(sealing.secret_mask(secret) if secret is not None else UNREADABLE)
        if plaintext:
            values.append(secret if secret is not None else UNREADABLE)
        yield pk, [pk, *values]


def export_rows(*, kind: str, filters: dict, plaintext: bool, after: int = 0, limit: int | None = None,
                chunk_size: int = 1000) -> Iterator[tuple[int, list]]:
    """(id, row) pairs after the id ``after``, at most ``limit``, in id order.
    Read ``chunk_size`` rows a query (``shop.project.paging``): memory stays
    the same whatever the set's size, also behind PgBouncer."""
    queryset = (_orders if kind == ExportKind.ORDERS else _keys)(filters).filter(pk__gt=after).order_by("pk")
    if kind == ExportKind.ORDERS:
        return _order_rows(filters, queryset, limit, chunk_size)
    return _key_rows(plaintext, queryset, limit, chunk_size)
