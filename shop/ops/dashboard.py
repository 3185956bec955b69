"""The owner's dashboard, the admin's home page (shop/adminsite.py): what needs
action, sales per day, orders, deliveries, review queue, stock and risk, open
key reports and unacknowledged alerts, with bar charts drawn as SVG on the
server (no script, no CDN) that shrink to their card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from delivery.models import Delivery, DeliveryStatus, OwnerAlert
from inventory.models import CardKey, CardKeyStatus, KeyPolicy
from riskctl.models import Assessment, Decision, ReviewItem
from shop.models import KeyReport, KeyReportStatus, Order, OrderStatus, Product

PAID_STATUSES = (
    OrderStatus.PAID, OrderStatus.IN_REVIEW, OrderStatus.AWAITING_STOCK, OrderStatus.FULFILLING, OrderStatus.DELIVERED,
)
BAR_WIDTH = 360
BAR_HEIGHT = 18
# Room left of the bars for the label and right of them for the value text.
STATUS_LABEL_WIDTH, STATUS_TEXT_WIDTH = 150, 70
STOCK_LABEL_WIDTH, STOCK_TEXT_WIDTH = 170, 90
LATEST_KEY_REPORTS = 5
# Sales per day: this many days up to today, in the shop's time zone.
SALES_DAYS = 14
COLUMN_WIDTH, COLUMN_GAP, COLUMN_HEIGHT = 26, 6, 120
# Room under the columns for the day labels, above them for the tallest value.
COLUMN_LABEL_HEIGHT, COLUMN_TOP = 18, 4


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    width: int
    y: int
    flag: bool = False


def bars_layout(*, rows: list[tuple[str, float, str, bool]]) -> list[Bar]:
    """(label, value, shown text, flagged) → bars scaled to the largest value."""
    top = max((value for _, value, _, _ in rows), default=0) or 1
    return [
        Bar(label=label, value=value, text=text, width=round(BAR_WIDTH * value / top), y=i * (BAR_HEIGHT + 6), flag=flag)
        for i, (label, value, text, flag) in enumerate(rows)
    ]


@dataclass(frozen=True)
class Column:
    label: str
    title: str
    x: int
    y: int
    height: int
    # The day label under the column (every other day, so they do not collide).
    show_label: bool


def columns_layout(*, rows: list[tuple[str, float, str]]) -> list[Column]:
    """(label, value, tooltip) → vertical columns scaled to the largest value,
    the last one labelled and every other one back from it."""
    top = max((value for _, value, _ in rows), default=0) or 1
    columns = []
    for i, (label, value, title) in enumerate(rows):
        height = round(COLUMN_HEIGHT * value / top)
        columns.append(Column(label=label, title=title, x=i * (COLUMN_WIDTH + COLUMN_GAP),
                              y=COLUMN_TOP + COLUMN_HEIGHT - height, height=height,
                              show_label=(len(rows) - 1 - i) % 2 == 0))
    return columns


def sales_per_day(*, now, days: int = SALES_DAYS) -> list[dict]:
    """Orders paid and revenue (refunds left out) per calendar day in the
    shop's time zone, oldest first, days without sales included."""
    zone = timezone.get_default_timezone()
    today = timezone.localtime(now, zone).date()
    first = today - timedelta(days=days - 1)
    rows = (
        Order.objects.filter(paid_at__gte=datetime.combine(first, time.min, tzinfo=zone),
                             status__in=[*PAID_STATUSES, OrderStatus.REFUNDED])
        .annotate(day=TruncDate("paid_at", tzinfo=zone)).values("day")
        .annotate(orders=Count("id"), amount=Sum("amount", filter=~Q(status=OrderStatus.REFUNDED))).order_by()
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for n in range(days):
        day = first + timedelta(days=n)
        row = by_day.get(day, {})
        result.append({"day": day, "orders": row.get("orders", 0), "amount": row.get("amount") or 0})
    return result


def needing_action() -> list[dict]:
    """What waits for the owner, each a count and the admin list showing those rows."""
    orders = dict(
        Order.objects.filter(status__in=[OrderStatus.IN_REVIEW, OrderStatus.AWAITING_STOCK, OrderStatus.PREPARING])
        .values_list("status").annotate(n=Count("id")).order_by()
    )
    order_list = reverse("admin:shop_order_changelist")
    return [
        {"key": "in-review", "label": gettext_lazy("Orders in review"), "count": orders.get(OrderStatus.IN_REVIEW, 0),
         "url": f"{order_list}?status__exact={OrderStatus.IN_REVIEW}"},
        {"key": "awaiting-stock", "label": gettext_lazy("Paid, waiting for stock"),
         "count": orders.get(OrderStatus.AWAITING_STOCK, 0),
         "url": f"{order_list}?status__exact={OrderStatus.AWAITING_STOCK}"},
        {"key": "manual-queue", "label": gettext_lazy("Paid, to prepare by hand"),
         "count": orders.get(OrderStatus.PREPARING, 0), "url": reverse("admin:shop_manualqueueorder_changelist")},
        {"key": "dead-letter", "label": gettext_lazy("Deliveries failed for good"),
         "count": Delivery.objects.filter(status=DeliveryStatus.FAILED).count(),
         "url": f"{reverse('admin:delivery_delivery_changelist')}?status__exact={DeliveryStatus.FAILED}"},
        {"key": "open-reports", "label": gettext_lazy("Key reports waiting"),
         "count": KeyReport.objects.filter(status=KeyReportStatus.OPEN).count(),
         "url": f"{reverse('admin:shop_keyreport_changelist')}?status__exact={KeyReportStatus.OPEN}"},
        {"key": "alerts", "label": gettext_lazy("Alerts not acknowledged"),
         "count": OwnerAlert.objects.filter(acknowledged_at__isnull=True).count(),
         "url": f"{reverse('admin:delivery_owneralert_changelist')}?acknowledged=no"},
    ]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def dashboard_stats(*, now=None) -> dict:
    now = now or timezone.now()
    periods = {gettext_lazy("today"): timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0),
               gettext_lazy("7 days"): now - timedelta(days=7), gettext_lazy("30 days"): now - timedelta(days=30)}
    sales = []
    for name, since in periods.items():
        paid = Order.objects.filter(paid_at__gte=since, status__in=[*PAID_STATUSES, OrderStatus.REFUNDED])
        row = paid.aggregate(orders=Count("id"), amount=Sum("amount", filter=~Q(status=OrderStatus.REFUNDED)))
        sales.append({"period": name, "orders": row["orders"], "amount": row["amount"] or 0,
                      "created": Order.objects.filter(created_at__gte=since).count()})

    by_status = dict(Order.objects.values_list("status").annotate(n=Count("id")).order_by())
    status_bars = bars_layout(rows=[
        (label, by_status.get(value, 0), str(by_status.get(value, 0)), False)
        for value, label in OrderStatus.choices
    ])

    deliveries = Delivery.objects.exclude(status=DeliveryStatus.PENDING).aggregate(
        done=Count("id"), sent=Count("id", filter=Q(status=DeliveryStatus.SENT)),
    )
    success_rate = None if not deliveries["done"] else round(100 * deliveries["sent"] / deliveries["done"], 1)
    latencies = [
        d.total_seconds() for d in Order.objects.filter(
            delivered_at__isnull=False, paid_at__isnull=False, delivered_at__gte=now - timedelta(days=30)
        ).annotate(latency=ExpressionWrapper(F("delivered_at") - F("paid_at"), output_field=DurationField()))
        .values_list("latency", flat=True)
    ]

    queue = ReviewItem.objects.filter(decided_at__isnull=True)
    oldest_review = queue.order_by("opened_at").values_list("opened_at", flat=True).first()

    available = dict(
        CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).values_list("product").annotate(n=Count("id")).order_by()
    )
    thresholds = dict(KeyPolicy.objects.values_list("product_id", "low_stock_threshold"))
    stock_rows, low_stock = [], []
    # What is sold from keys: products without variants, and the variants (a
    # product with variants has no keys of its own).
    sold_from_keys = Product.objects.filter(active=True, variants__isnull=True).select_related("parent")
    for product in sold_from_keys.order_by("name", "id"):
        n = available.get(product.pk, 0)
        low = n <= thresholds.get(product.pk, 0) or n == 0
        stock_rows.append((str(product), n, _("%(n)s — low") % {"n": n} if low else str(n), low))
        if low:
            low_stock.append({"product": product, "available": n})

    open_reports = KeyReport.objects.filter(status=KeyReportStatus.OPEN)
    latest_reports = list(
        open_reports.select_related("order", "card_key__product").order_by("-created_at", "-id")[:LATEST_KEY_REPORTS]
    )

    month = now - timedelta(days=30)
    risk = Assessment.objects.filter(created_at__gte=month).aggregate(
        blocked=Count("id", filter=Q(decision=Decision.BLOCK)), reviewed=Count("id", filter=Q(decision=Decision.REVIEW)),
    )
    days = sales_per_day(now=now)
    day_columns = columns_layout(rows=[
        (date_format(row["day"], "n/j"), float(row["amount"]),
         ngettext("%(day)s: %(n)s order, %(amount)s", "%(day)s: %(n)s orders, %(amount)s", row["orders"])
         % {"day": row["day"].isoformat(), "n": row["orders"], "amount": row["amount"]})
        for row in days
    ])
    return {
        "sales": sales,
        "sales_days": days,
        "sales_day_columns": day_columns,
        "sales_days_orders": sum(row["orders"] for row in days),
        "sales_days_amount": sum((row["amount"] for row in days), 0),
        "sales_days_max": max((row["amount"] for row in days), default=0),
        "needing_action": needing_action(),
        "low_stock": low_stock,
        "status_bars": status_bars,
        "delivery_success_rate": success_rate,
        "deliveries_done": deliveries["done"],
        "latency_p50": _percentile(latencies, 0.5),
        "latency_p95": _percentile(latencies, 0.95),
        "review_queue": queue.count(),
        "review_oldest_age": None if oldest_review is None else now - oldest_review,
        "stock_bars": bars_layout(rows=stock_rows),
        "key_reports_open": open_reports.count(),
        "key_reports_latest": latest_reports,
        "alerts_unacknowledged": OwnerAlert.objects.filter(acknowledged_at__isnull=True).count(),
        "blocked_30d": risk["blocked"],
        "reviewed_30d": risk["reviewed"],
        "bar_width": BAR_WIDTH,
        "bar_height": BAR_HEIGHT,
    }


def dashboard_context() -> dict:
    """dashboard_stats and the sizes its charts are drawn at."""
    context = dashboard_stats()
    context["status_svg_height"] = len(context["status_bars"]) * (BAR_HEIGHT + 6)
    context["stock_svg_height"] = max(1, len(context["stock_bars"])) * (BAR_HEIGHT + 6)
    context["status_svg_width"] = STATUS_LABEL_WIDTH + BAR_WIDTH + STATUS_TEXT_WIDTH
    context["stock_svg_width"] = STOCK_LABEL_WIDTH + BAR_WIDTH + STOCK_TEXT_WIDTH
    context["status_label_width"], context["stock_label_width"] = STATUS_LABEL_WIDTH, STOCK_LABEL_WIDTH
    context["status_text_x"], context["stock_text_x"] = STATUS_LABEL_WIDTH + 4, STOCK_LABEL_WIDTH + 4
    context["days_svg_width"] = SALES_DAYS * (COLUMN_WIDTH + COLUMN_GAP) - COLUMN_GAP
    context["days_svg_height"] = COLUMN_TOP + COLUMN_HEIGHT + COLUMN_LABEL_HEIGHT
    context["days_label_y"] = COLUMN_TOP + COLUMN_HEIGHT + 14
    context["column_width"] = COLUMN_WIDTH
    return context


@staff_member_required
def dashboard(request):
    """The old address of the dashboard (bookmarks): it is the admin's home page now."""
    return redirect("admin:index")
