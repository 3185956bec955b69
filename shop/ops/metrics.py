"""/metrics in the Prometheus text format (0.0.4), computed from the database.

Orders and deliveries by status, queue depth, paid → delivered latency as a
histogram (from the orders' ``paid_at`` and ``delivered_at``), payment
callbacks by provider and outcome, the oldest pending delivery and the
sweeper's last run. Only for a bearer of ``METRICS_TOKEN`` or a client in
``METRICS_ALLOWED_IPS``: the numbers are business data.
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from rq import Queue

from delivery.models import Delivery
from delivery.selectors import delivery_oldest_pending_at, sweep_last_run
from payments.models import PaymentEvent
from riskctl.identity import client_ip
from shop.models import Order, OrderStatus
from shop.project.redis_breaker import redis_probe_client

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Upper bounds (seconds) of the paid → delivered histogram buckets.
LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


def metrics_allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    if not settings.METRICS_ALLOWED_IPS:
        return False
    try:
        ip = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(allowed, strict=False) for allowed in settings.METRICS_ALLOWED_IPS)


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value, **labels) -> None:
        rendered = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def metrics_render() -> str:
    out = _Exposition()
    now = timezone.now()

    out.family("kamidrop_orders", "gauge", "Orders by status.")
    counts = dict(Order.objects.values_list("status").annotate(n=Count("id")).order_by())
    for status in OrderStatus.values:
        out.sample("kamidrop_orders", counts.get(status, 0), status=status)

    out.family("kamidrop_deliveries", "gauge", "Deliveries by channel and status.")
    for channel, status, n in (
        Delivery.objects.values_list("channel", "status").annotate(n=Count("id")).order_by("channel", "status")
    ):
        out.sample("kamidrop_deliveries", n, channel=channel, status=status)

    oldest = delivery_oldest_pending_at()
    out.family("kamidrop_oldest_pending_delivery_seconds", "gauge", "Age of the oldest delivery waiting to be sent.")
    out.sample("kamidrop_oldest_pending_delivery_seconds", 0 if oldest is None else int((now - oldest).total_seconds()))

    run = sweep_last_run()
    out.family("kamidrop_sweep_last_run_timestamp_seconds", "gauge", "When the sweeper last finished (0: never).")
    last = (run.finished_at or run.started_at) if run is not None else None
    out.sample("kamidrop_sweep_last_run_timestamp_seconds", 0 if last is None else int(last.timestamp()))

    _latency_histogram(out)

    out.family("kamidrop_payment_callbacks_total", "counter", "Verified payment notices by provider and outcome.")
    for provider, outcome, n in (
        PaymentEvent.objects.values_list("provider", "outcome").annotate(n=Count("id")).order_by("provider", "outcome")
    ):
        out.sample("kamidrop_payment_callbacks_total", n, provider=provider, outcome=outcome)

    try:
        redis = redis_probe_client(timeout=2)
        depths = {name: Queue(name, connection=redis).count for name in settings.RQ_QUEUES}
    except Exception:  # noqa: BLE001 — reported as redis_up 0, the scrape still succeeds
        depths = None
    if depths is not None:
        out.family("kamidrop_queue_depth", "gauge", "Jobs waiting in each RQ queue.")
        for queue_name, depth in depths.items():
            out.sample("kamidrop_queue_depth", depth, queue=queue_name)
    out.family("kamidrop_redis_up", "gauge", "1 when Redis answered.")
    out.sample("kamidrop_redis_up", 0 if depths is None else 1)
    return out.text()


def _latency_histogram(out: _Exposition) -> None:
    name = "kamidrop_paid_to_delivered_seconds"
    delivered = Order.objects.filter(paid_at__isnull=False, delivered_at__isnull=False).annotate(
        latency=ExpressionWrapper(F("delivered_at") - F("paid_at"), output_field=DurationField())
    )
    aggregates = {f"le_{b}": Count("id", filter=Q(latency__lte=timedelta(seconds=b))) for b in LATENCY_BUCKETS}
    row = delivered.aggregate(count=Count("id"), total=Sum("latency"), **aggregates)
    out.family(name, "histogram", "Seconds from payment to the last channel delivered.")
    for bound in LATENCY_BUCKETS:
        out.sample(f"{name}_bucket", row[f"le_{bound}"], le=f"{float(bound)}")
    out.sample(f"{name}_bucket", row["count"], le="+Inf")
    total = row["total"] or timedelta(0)
    out.sample(f"{name}_sum", round(total.total_seconds(), 3))
    out.sample(f"{name}_count", row["count"])


@require_GET
def metrics(request):
    if not metrics_allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE)
