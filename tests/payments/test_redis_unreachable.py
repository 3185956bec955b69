"""A Redis that drops packets (connect hangs, nothing refuses): the notify
endpoint pays one connect timeout, then the breaker answers for it; and the
breaker's own states."""

import socket
import time

import django_rq
import pytest
import redis
from django.core.cache import cache

from payments.models import PaymentEvent, PaymentEventOutcome
from payments.services.inbox import APPLY_QUEUE
from shop.models import OrderStatus
from shop.project.redis_breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerConnectionPool,
    CircuitBreaker,
    RedisUnreachable,
    breaker_for,
    breakers_reset,
)
from tests.conftest import NOTIFY_URL, sandbox_notice


@pytest.fixture
def black_hole():
    """``host:port`` of a loopback listener whose accept queue is full: further
    SYNs are dropped, so a connect to it hangs until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(16):  # fill the backlog until a connect no longer completes
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
        time.sleep(0.01)
    probe = socket.socket()
    probe.settimeout(0.2)
    with pytest.raises(TimeoutError):
        probe.connect(address)
    probe.close()
    yield f"{address[0]}:{address[1]}"
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.fixture(autouse=True)
def fresh_breakers():
    breakers_reset()
    yield
    breakers_reset()


@pytest.mark.django_db
def test_notifies_to_an_unreachable_redis_pay_one_connect_timeout(
    client, queued, monkeypatch, settings, black_hole, make_product, make_unpaid_order
):
    # given: the payments queue's Redis and the cache's drop every packet
    connect_timeout = 1.0
    settings.REDIS_CONNECT_TIMEOUT = connect_timeout
    settings.REDIS_BREAKER_SECONDS = 60
    url = f"redis://{black_hole}/0"
    queues = django_rq.settings.QUEUES
    monkeypatch.setitem(queues, APPLY_QUEUE, {**queues[APPLY_QUEUE], "URL": url})
    cache_options = {**settings.CACHES["default"]["OPTIONS"], "socket_connect_timeout": connect_timeout}
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url, "OPTIONS": cache_options}}
    product = make_product(keys=20)
    orders = [make_unpaid_order(product=product) for _ in range(20)]
    # when: 20 notifies, one after the other
    replies, took = [], []
    for order in orders:
        started = time.monotonic()
        replies.append(client.post(NOTIFY_URL, sandbox_notice(order)).content)
        took.append(time.monotonic() - started)
    # then: every notify answered and paid in its request
    assert replies == [b"success"] * 20
    for order in orders:
        order.refresh_from_db()
    assert [order.status for order in orders] == [OrderStatus.FULFILLING] * 20
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED] * 20
    # and only the first waited for a connect: 19 × 1 s before the breaker
    assert connect_timeout <= took[0] < 2 * connect_timeout
    assert max(took[1:]) < connect_timeout / 2
    assert sum(took[1:]) < 19 * connect_timeout / 4
    assert breaker_for(address=black_hole).state == OPEN
    # and the cache reads as empty, without waiting either
    started = time.monotonic()
    assert cache.get("anything", "default") == "default"
    assert time.monotonic() - started < 0.1


def test_the_breaker_opens_fails_fast_half_opens_and_closes():
    # given
    now = [100.0]
    breaker = CircuitBreaker(name="redis:6379", seconds=5, clock=lambda: now[0])
    breaker.allow()
    assert breaker.state == CLOSED
    # when: a connect fails
    breaker.record_failure()
    # then: calls fail fast while the window lasts
    assert breaker.state == OPEN
    now[0] += 4.9
    with pytest.raises(RedisUnreachable):
        breaker.allow()
    # when: the window has passed, one trial goes through and the others still fail fast
    now[0] += 0.1
    breaker.allow()
    assert breaker.state == HALF_OPEN
    with pytest.raises(RedisUnreachable):
        breaker.allow()
    # when: the trial succeeds
    breaker.record_success()
    # then
    assert breaker.state == CLOSED
    breaker.allow()


def test_a_failed_trial_opens_the_breaker_for_another_window():
    # given: a half-open breaker
    now = [0.0]
    breaker = CircuitBreaker(name="redis:6379", seconds=5, clock=lambda: now[0])
    breaker.record_failure()
    now[0] += 5
    breaker.allow()
    # when: the trial fails too
    breaker.record_failure()
    # then
    assert breaker.state == OPEN
    now[0] += 4.9
    with pytest.raises(RedisUnreachable):
        breaker.allow()
    now[0] += 0.1
    breaker.allow()
    assert breaker.state == HALF_OPEN


def test_a_connect_that_times_out_opens_the_breaker_and_the_next_does_not_touch_the_network(settings,
                                                                                            black_hole):
    # given
    settings.REDIS_BREAKER_SECONDS = 60
    client = redis.Redis(connection_pool=BreakerConnectionPool.from_url(f"redis://{black_hole}/0",
                                                                        socket_connect_timeout=0.3))
    # when
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    first_took = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(RedisUnreachable):
        client.ping()
    # then
    assert 0.3 <= first_took < 1
    assert time.monotonic() - started < 0.05
    assert breaker_for(address=black_hole).state == OPEN
