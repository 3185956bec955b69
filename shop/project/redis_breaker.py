"""A circuit breaker per Redis server, checked where a connection is opened:
an unreachable Redis costs one connect timeout, not one per request.

A connect that fails (refused, or no answer within REDIS_CONNECT_TIMEOUT)
opens the server's breaker: for REDIS_BREAKER_SECONDS every connect to it
raises ``RedisUnreachable`` (a redis ``ConnectionError``) without touching
the network, so callers take the path they take today when Redis is down
(the notify applies its notice in the request, the counters fail open,
after-commit enqueues log and leave their rows to the sweeper). Then one
connect is let through as a trial (half-open): success closes the breaker,
failure opens it for another window. Connections already open are not
affected: the breaker only guards the TCP (or Unix socket) connect.

Wired in one place, the connection classes; every Redis client the project
builds uses them: ``redis_client_for`` (the payments inbox, the RQ queues
through ``BreakerQueue``) and the counter cache (``BreakerConnectionPool`` in
CACHES), and their Sentinel versions (shop/project/redis_sentinel.py), where
the breaker guards each address: every sentinel, the master.
The state is per process and shared by its threads (gunicorn gthread).
"""

from __future__ import annotations

import functools
import threading
import time

import redis
from django.conf import settings
from django_rq.queues import DjangoRQ
from redis.connection import Connection, ConnectionPool, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class RedisUnreachable(RedisConnectionError):
    """Raised instead of connecting while the server's breaker is open."""

    code = "redis_unreachable"


class CircuitBreaker:
    """closed → (a failure) → open → (``seconds`` later, one trial) → half-open
    → closed on success, open again on failure. Thread-safe."""

    def __init__(self, *, name: str, seconds: float | None = None, clock=time.monotonic):
        self.name = name
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._opened_at = 0.0

    @property
    def seconds(self) -> float:
        return settings.REDIS_BREAKER_SECONDS if self._seconds is None else self._seconds

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def allow(self) -> None:
        """Let a call through, or raise RedisUnreachable. After the window the
        first caller becomes the trial; the others fail fast until it reports."""
        with self._lock:
            if self._state == CLOSED:
                return
            if self._state == OPEN and self._clock() - self._opened_at >= self.seconds:
                self._state = HALF_OPEN
                return
            raise RedisUnreachable(f"Redis at {self.name} unreachable: circuit open for {self.seconds:g} s")

    def record_success(self) -> None:
        with self._lock:
            self._state = CLOSED

    def record_failure(self) -> None:
        with self._lock:
            self._state = OPEN
            self._opened_at = self._clock()


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(*, address: str) -> CircuitBreaker:
    """The process-wide breaker of the Redis server at ``address``."""
    with _breakers_lock:
        breaker = _breakers.get(address)
        if breaker is None:
            breaker = _breakers[address] = CircuitBreaker(name=address)
        return breaker


def breakers_reset() -> None:
    """Forget every breaker's state (tests)."""
    with _breakers_lock:
        _breakers.clear()


class _BreakerMixin:
    """Checks the server's breaker around the socket connect (``_connect``):
    retries and the handshake above it are left as redis-py does them."""

    def _breaker_address(self) -> str:
        path = getattr(self, "path", None)
        return f"unix:{path}" if path else f"{self.host}:{self.port}"

    def _connect(self):
        breaker = breaker_for(address=self._breaker_address())
        breaker.allow()
        try:
            sock = super()._connect()
        except BaseException:  # refused, unreachable, socket.timeout; and a trial must never stay half-open
            breaker.record_failure()
            raise
        breaker.record_success()
        return sock


class BreakerConnection(_BreakerMixin, Connection):
    pass


class BreakerSSLConnection(_BreakerMixin, SSLConnection):
    pass


class BreakerUnixDomainSocketConnection(_BreakerMixin, UnixDomainSocketConnection):
    pass


_BREAKER_CLASSES = {
    Connection: BreakerConnection,
    SSLConnection: BreakerSSLConnection,
    UnixDomainSocketConnection: BreakerUnixDomainSocketConnection,
}


class BreakerConnectionPool(ConnectionPool):
    """A ConnectionPool whose connections check the breaker (whatever the URL's
    scheme chose: TCP, TLS or Unix socket). Django's RedisCache takes it as
    ``OPTIONS["pool_class"]``."""

    def __init__(self, connection_class=Connection, **kwargs):
        super().__init__(connection_class=_BREAKER_CLASSES.get(connection_class, connection_class), **kwargs)


@functools.cache
def redis_client(url: str, *, socket_timeout: float | None = None) -> redis.Redis:
    """One client (and pool) per process, URL and read timeout, connecting
    within REDIS_CONNECT_TIMEOUT through the breaker."""
    pool = BreakerConnectionPool.from_url(
        url, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT, socket_timeout=socket_timeout
    )
    return redis.Redis(connection_pool=pool)


def redis_client_for(config: dict, *, socket_timeout: float | None = None) -> redis.Redis:
    """The shared client of a django-rq connection config (an RQ_QUEUES
    entry): its ``URL``, or the master its ``SENTINELS`` name
    (shop/project/redis_sentinel.py), through the breaker either way."""
    if "SENTINELS" in config and "URL" not in config:
        from shop.project.redis_sentinel import sentinel_client

        return sentinel_client(config, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
                               socket_timeout=socket_timeout)
    return redis_client(config["URL"], socket_timeout=socket_timeout)


def redis_probe_client(*, timeout: float) -> redis.Redis:
    """A client of its own (no shared pool, no breaker) with ``timeout`` on
    connects and reads, for monitors (/healthz, /metrics): a hung Redis must
    not hang them, and they must see Redis itself, not a breaker's memory."""
    if settings.REDIS_SENTINELS:
        from shop.project.redis_sentinel import sentinel_probe_client

        return sentinel_probe_client(url=settings.REDIS_URL, sentinels=settings.REDIS_SENTINELS,
                                     service_name=settings.REDIS_SENTINEL_MASTER,
                                     sentinel_password=settings.REDIS_SENTINEL_PASSWORD, timeout=timeout)
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)


class BreakerQueue(DjangoRQ):
    """The RQ queue class of RQ_QUEUES: django-rq builds a fresh client per
    ``get_queue`` from the config alone (no connection options); this one
    uses the shared ``redis_client_for`` the queue's config instead (no read
    timeout, as django-rq's), unless the caller passed a breaker client of
    its own (the payments inbox)."""

    def __init__(self, name="default", default_timeout=None, connection=None, **kwargs):
        from django_rq.settings import QUEUES

        pool = getattr(connection, "connection_pool", None)
        through_breaker = issubclass(getattr(pool, "connection_class", object), _BreakerMixin)
        if not through_breaker and name in QUEUES:
            connection = redis_client_for(QUEUES[name])
        super().__init__(name, default_timeout=default_timeout, connection=connection, **kwargs)
