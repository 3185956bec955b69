"""The owner's dashboard in the admin: sales, orders, deliveries, review queue,
stock and risk, open key reports and unacknowledged alerts, with bar charts
drawn as SVG on the server (no script, no CDN) that shrink to their card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.shortcuts import render
from django.utils import timezone

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


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def dashboard_stats(*, now=None) -> dict:
    now = now or timezone.now()
    periods = {"today": timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0),
               "7 days": now - timedelta(days=7), "30 days": now - timedelta(days=30)}
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
    stock_rows = []
    for product in Product.objects.filter(active=True).order_by("name", "id"):
        n = available.get(product.pk, 0)
        low = n <= thresholds.get(product.pk, 0) or n == 0
        stock_rows.append((product.name, n, f"{n}{' — low' if low else ''}", low))

    open_reports = KeyReport.objects.filter(status=KeyReportStatus.OPEN)
    latest_reports = list(
        open_reports.select_related("order", "card_key__product").order_by("-created_at", "-id")[:LATEST_KEY_REPORTS]
    )

    month = now - timedelta(days=30)
    risk = Assessment.objects.filter(created_at__gte=month).aggregate(
        blocked=Count("id", filter=Q(decision=Decision.BLOCK)), reviewed=Count("id", filter=Q(decision=Decision.REVIEW)),
    )
    return {
        "sales": sales,
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


@staff_member_required
def dashboard(request):
    context = {**admin.site.each_context(request), "title": "Dashboard", **dashboard_stats()}
    context["status_svg_height"] = len(context["status_bars"]) * (BAR_HEIGHT + 6)
    context["stock_svg_height"] = max(1, len(context["stock_bars"])) * (BAR_HEIGHT + 6)
    context["status_svg_width"] = STATUS_LABEL_WIDTH + BAR_WIDTH + STATUS_TEXT_WIDTH
    context["stock_svg_width"] = STOCK_LABEL_WIDTH + BAR_WIDTH + STOCK_TEXT_WIDTH
    context["status_label_width"], context["stock_label_width"] = STATUS_LABEL_WIDTH, STOCK_LABEL_WIDTH
    context["status_text_x"], context["stock_text_x"] = STATUS_LABEL_WIDTH + 4, STOCK_LABEL_WIDTH + 4
    return render(request, "admin/dashboard.html", context)
