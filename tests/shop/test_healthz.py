import pytest

from shop.access import site_id


@pytest.mark.django_db
def test_healthz_reports_database_redis_and_queues(client):
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "site": site_id(), "database": "ok", "redis": "ok", "queues": {"payments": 0, "default": 0, "delivery": 0},
        "oldest_pending_delivery_seconds": None,
        "sweeper": {"status": "never run", "last_run_at": None, "age_seconds": None},
    }


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_unreachable(client, settings):
    # given: Redis unreachable (no server on this socket)
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json()["redis"].startswith("error: ")
    assert response.json()["database"] == "ok"


def test_the_site_id_names_this_shop_without_revealing_its_secret(settings):
    # the payment doctor tells this shop from another server answering at SITE_URL by it
    first = site_id()
    assert len(first) == 16 and settings.SECRET_KEY[:8] not in first
    settings.SECRET_KEY = "another-shop-" + "x" * 40
    assert site_id() != first


@pytest.mark.django_db
def test_healthz_for_a_balancer_stays_200_while_redis_is_unreachable(client, settings):
    # given: Redis unreachable, which every replica shares and the shop rides out
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    # when
    response = client.get("/healthz?scope=replica")
    # then: the replica stays in the balancer; the report still says what is wrong
    assert response.status_code == 200
    assert response.json()["status"] == "unhealthy"
    assert response.json()["redis"].startswith("error: ")


@pytest.mark.django_db
def test_healthz_for_a_balancer_is_503_when_the_database_is_down(client, monkeypatch):
    # given: every query of this replica fails
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    # when
    response = client.get("/healthz?scope=replica")
    # then: the balancer takes this replica out
    assert response.status_code == 503
    assert response.json()["database"] == "error: RuntimeError"


@pytest.mark.django_db
def test_healthz_for_a_balancer_stays_200_while_the_sweeper_is_overdue(client, settings):
    # given: the last sweep is more than 5 intervals old (the sweeper is no replica's fault)
    from datetime import timedelta

    from django.utils import timezone

    from delivery.models import SweepRun

    settings.SWEEP_INTERVAL_SECONDS = 60
    SweepRun.objects.create(name="sweep", started_at=timezone.now() - timedelta(seconds=302),
                            finished_at=timezone.now() - timedelta(seconds=301))
    # when
    for_monitors, for_balancer = client.get("/healthz"), client.get("/healthz?scope=replica")
    # then
    assert (for_monitors.status_code, for_balancer.status_code) == (503, 200)
    assert for_balancer.json()["sweeper"]["status"] == "overdue"
