"""/healthz (oldest pending delivery, the sweeper) and /metrics (Prometheus text, token or IP only)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from delivery.models import Channel, Delivery, DeliveryStatus, SweepRun
from shop.models import Order

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_oldest_pending_delivery_and_the_last_sweep(delivered_order, client, settings):
    # given
    settings.SWEEP_INTERVAL_SECONDS = 60
    now = timezone.now()
    Delivery.objects.filter(order=delivered_order, channel=Channel.EMAIL).update(
        status=DeliveryStatus.PENDING, sent_at=None, created_at=now - timedelta(seconds=90)
    )
    SweepRun.objects.create(name="sweep", started_at=now - timedelta(seconds=121), finished_at=now - timedelta(seconds=120))
    # when
    response = client.get("/healthz")
    body = response.json()
    # then
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["oldest_pending_delivery_seconds"] in (90, 91)
    assert body["sweeper"]["status"] == "ok"
    assert body["sweeper"]["age_seconds"] in (120, 121)


def test_healthz_is_503_when_the_sweeper_is_overdue(client, settings):
    # given: the last sweep is more than 5 intervals old
    settings.SWEEP_INTERVAL_SECONDS = 60
    SweepRun.objects.create(name="sweep", started_at=timezone.now() - timedelta(seconds=302),
                            finished_at=timezone.now() - timedelta(seconds=301))
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["sweeper"]["status"] == "overdue"
    assert response.json()["database"] == "ok" and response.json()["redis"] == "ok"


def test_healthz_is_503_when_the_database_is_down(client, settings, monkeypatch):
    # given: every query fails
    from django.db import connection

    def refuse(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(connection, "cursor", refuse)
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json()["database"] == "error: RuntimeError"
    assert "sweeper" not in response.json()


def test_metrics_refuses_without_token_or_allowed_ip(client, settings):
    # given
    settings.METRICS_TOKEN = "metrics-token-1"
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    # when
    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    # then
    assert anonymous.status_code == 403
    assert wrong.status_code == 403


def test_metrics_answers_an_allowed_ip_without_token(client, settings):
    # given: the test client comes from 127.0.0.1
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.0/8"]
    # when
    response = client.get("/metrics")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_metrics_exposes_orders_deliveries_latency_callbacks_and_queues(
    delivered_order, make_product, make_unpaid_order, client, settings
):
    # given: one order delivered 3 s after payment, one unpaid
    settings.METRICS_TOKEN = "metrics-token-1"
    paid_at = timezone.now() - timedelta(minutes=1)
    Order.objects.filter(pk=delivered_order.pk).update(paid_at=paid_at, delivered_at=paid_at + timedelta(seconds=3))
    make_unpaid_order(product=make_product())
    # when
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-1")
    # then
    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    for expected in [
        'kamidrop_orders{status="DELIVERED"} 1',
        'kamidrop_orders{status="PENDING_PAYMENT"} 1',
        'kamidrop_orders{status="REFUNDED"} 0',
        'kamidrop_deliveries{channel="EMAIL",status="SENT"} 1',
        'kamidrop_deliveries{channel="INBOX",status="SENT"} 1',
        'kamidrop_paid_to_delivered_seconds_bucket{le="2.0"} 0',
        'kamidrop_paid_to_delivered_seconds_bucket{le="5.0"} 1',
        'kamidrop_paid_to_delivered_seconds_bucket{le="+Inf"} 1',
        "kamidrop_paid_to_delivered_seconds_sum 3.0",
        "kamidrop_paid_to_delivered_seconds_count 1",
        'kamidrop_payment_callbacks_total{provider="sandbox",outcome="ACCEPTED"} 1',
        'kamidrop_queue_depth{queue="delivery"} 0',
        "kamidrop_redis_up 1",
        "kamidrop_oldest_pending_delivery_seconds 0",
        "# TYPE kamidrop_paid_to_delivered_seconds histogram",
    ]:
        assert expected in lines, expected
