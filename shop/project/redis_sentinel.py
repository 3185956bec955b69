"""Redis through Sentinel (``REDIS_SENTINELS``; shop/project/redis_config.py).

A client asks a sentinel for the current master each time it opens a
connection (redis-py's ``SentinelConnectionPool``), and drops its idle
connections when the answer changes; a connection still open to a master
that was demoted fails on its next write (READONLY) and reconnects. So after
a failover every new connection reaches the new master, and the RQ queues,
the cache, the payments inbox and /healthz follow it with no restart.

The circuit breaker of shop/project/redis_breaker.py guards every connect,
per address: to the master (an unreachable old master opens only its own
breaker, the new master's stays closed) and to each sentinel (a dead
sentinel costs one connect timeout per window, then the next one is asked).
"""

from __future__ import annotations

import functools

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection

from shop.project.redis_breaker import BreakerConnectionPool, _BreakerMixin
from shop.project.redis_config import redis_credentials


class BreakerSentinelManagedConnection(_BreakerMixin, SentinelManagedConnection):
    pass


class BreakerSentinelManagedSSLConnection(_BreakerMixin, SentinelManagedSSLConnection):
    pass


class BreakerSentinel(Sentinel):
    """redis-py's Sentinel whose connections to the sentinels go through the breaker."""

    def __init__(self, sentinels, *, sentinel_kwargs: dict, **connection_kwargs):
        super().__init__(sentinels, sentinel_kwargs=sentinel_kwargs, **connection_kwargs)
        self.sentinels = [
            redis.Redis(connection_pool=BreakerConnectionPool(host=host, port=port, **sentinel_kwargs))
            for host, port in sentinels
        ]


class SentinelMasterPool(SentinelConnectionPool):
    """The connection pool of the master the sentinels name, connecting
    through the breaker. Django's RedisCache takes it as
    ``OPTIONS["pool_class"]`` and builds it with ``from_url``."""

    @classmethod
    def from_url(cls, url: str, *, sentinels, service_name: str, sentinel_kwargs: dict | None = None, **kwargs):
        """``url`` gives the database number, username and password; its host
        is not used (the sentinels name the master). ``rediss://`` speaks TLS."""
        ssl = url.startswith("rediss://")
        kwargs = {**redis_credentials(url), **kwargs}
        manager = BreakerSentinel([tuple(s) for s in sentinels], sentinel_kwargs=dict(sentinel_kwargs or {}))
        connection_class = BreakerSentinelManagedSSLConnection if ssl else BreakerSentinelManagedConnection
        return cls(service_name, manager, connection_class=connection_class, **kwargs)


def _frozen(config: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in config.items() if v is not None))


@functools.cache
def _sentinel_client(sentinels: tuple, service_name: str, sentinel_kwargs: tuple, connection_kwargs: tuple):
    manager = BreakerSentinel(list(sentinels), sentinel_kwargs=dict(sentinel_kwargs))
    pool = SentinelMasterPool(service_name, manager, connection_class=BreakerSentinelManagedConnection,
                              **dict(connection_kwargs))
    return redis.Redis(connection_pool=pool)


def sentinel_client(config: dict, **connection_kwargs) -> redis.Redis:
    """One client (and pool) per process for the master a django-rq Sentinel
    config names (``SENTINELS``, ``MASTER_NAME``, ``DB``, ``USERNAME``,
    ``PASSWORD``, ``SENTINEL_KWARGS``), through the breaker."""
    kwargs = {"db": config.get("DB") or 0, "username": config.get("USERNAME"), "password": config.get("PASSWORD"),
              **connection_kwargs}
    return _sentinel_client(tuple(tuple(s) for s in config["SENTINELS"]), config["MASTER_NAME"],
                            _frozen(config.get("SENTINEL_KWARGS") or {}), _frozen(kwargs))


def sentinel_probe_client(*, url: str, sentinels, service_name: str, sentinel_password: str,
                          timeout: float) -> redis.Redis:
    """A client of its own (no shared pool, no breaker) for monitors, with
    ``timeout`` on every connect and read, to the sentinels and the master."""
    timeouts = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    sentinel = Sentinel([tuple(s) for s in sentinels], sentinel_kwargs={**timeouts, "password": sentinel_password or None})
    return sentinel.master_for(service_name, **redis_credentials(url), **timeouts)

