"""/healthz, for monitors: PostgreSQL, Redis and its queues, the oldest pending delivery, the sweeper."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from rq import Queue

from delivery.selectors import delivery_oldest_pending_at, sweep_last_run
from shop.access import site_id
from shop.project.redis_breaker import redis_probe_client

# /healthz is unhealthy once the sweeper's last run is this many intervals old.
SWEEP_OVERDUE_INTERVALS = 5
# /healthz?scope=replica is what a load balancer or Kubernetes acts on: the same
# report, answered 200 whenever this process reaches PostgreSQL. Redis, the
# queues and the sweeper are shared by every replica: taking them all out of the
# balancer for those would turn a Redis outage, which the shop rides out (README,
# "A Redis outage"), into a full one.
REPLICA_SCOPE = "replica"


@require_GET
def healthz(request):
    """For monitors: 200 when PostgreSQL and Redis answer and the sweeper runs; else 503.
    With ``?scope=replica``, for balancers: 200 when PostgreSQL answers."""
    checks = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, never raise: this page is for monitors
        checks["database"] = f"error: {type(exc).__name__}"
        healthy = False
    try:
        # A connection of its own with short timeouts: a hung Redis must not hang the monitor.
        redis = redis_probe_client(timeout=2)
        redis.ping()
        checks["redis"] = "ok"
        checks["queues"] = {name: Queue(name, connection=redis).count for name in settings.RQ_QUEUES}
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
        healthy = False
    if checks["database"] == "ok":
        now = timezone.now()
        oldest = delivery_oldest_pending_at()
        checks["oldest_pending_delivery_seconds"] = None if oldest is None else int((now - oldest).total_seconds())
        run = sweep_last_run()
        last = run.finished_at or run.started_at if run is not None else None
        age = None if last is None else int((now - last).total_seconds())
        # Never run yet (a fresh install whose worker is starting) is not overdue.
        overdue = age is not None and age > SWEEP_OVERDUE_INTERVALS * settings.SWEEP_INTERVAL_SECONDS
        checks["sweeper"] = {
            "status": "never run" if run is None else "overdue" if overdue else "ok",
            "last_run_at": None if last is None else last.isoformat(),
            "age_seconds": age,
        }
        healthy = healthy and not overdue
    serving = checks["database"] == "ok" if request.GET.get("scope") == REPLICA_SCOPE else healthy
    return JsonResponse({"status": "ok" if healthy else "unhealthy", "site": site_id(), **checks},
                        status=200 if serving else 503)
