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
