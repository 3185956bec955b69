"""The Redis settings (settings.py imports them): which Redis, how fast an
unreachable one is given up, and the cache and RQ queues built on it.

One server (``REDIS_URL``), or the master that Redis Sentinel names:
``REDIS_SENTINELS`` ("host1:26379,host2:26379") and ``REDIS_SENTINEL_MASTER``
(the master's name in the sentinels' config), with ``REDIS_SENTINEL_PASSWORD``
when the sentinels ask for one. With Sentinel every client (the queues, the
cache and so the rate limits, the payments inbox, /healthz) asks a sentinel
for the current master whenever it opens a connection, so after a failover
new connections reach the new master (``shop/project/redis_sentinel.py``).
``REDIS_URL`` then names no server: its password, username and database
number are used, its host is not (``redis://:password@mymaster/0``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

from shop.project.envconfig import env_list, env_str


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ImproperlyConfigured(f"REDIS_SENTINELS: {item!r} is not host:port")
    return host.strip("[]"), int(port)


def redis_credentials(url: str) -> dict:
    """The database number, username and password that ``url`` carries."""
    params = parse_url(url)
    return {"db": int(params.get("db") or 0), "username": params.get("username"), "password": params.get("password")}


def redis_stores(*, url: str, sentinels: list[tuple[str, int]], master: str, sentinel_password: str,
                 connect_timeout: float) -> dict:
    """CACHES and RQ_QUEUES for one server at ``url``, or for the master the
    sentinels name (tests build them for a real Sentinel the same way)."""
    cache_options = {
        "pool_class": "shop.project.redis_breaker.BreakerConnectionPool",
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": 1,
    }
    connection: dict = {"URL": url}
    if sentinels:
        # A sentinel that hangs costs no more than a Redis that does; the next sentinel is asked then.
        sentinel_kwargs = {"socket_connect_timeout": connect_timeout, "socket_timeout": 1,
                           "password": sentinel_password or None}
        cache_options.update(pool_class="shop.project.redis_sentinel.SentinelMasterPool", sentinels=sentinels,
                             service_name=master, sentinel_kwargs=sentinel_kwargs)
        credentials = redis_credentials(url)
        # django-rq's own Sentinel configuration, so that its dashboard and commands follow the master too.
        connection = {"SENTINELS": sentinels, "MASTER_NAME": master, "DB": credentials["db"],
                      "USERNAME": credentials["username"], "PASSWORD": credentials["password"],
                      "SENTINEL_KWARGS": sentinel_kwargs}
    # Holds only counters (rate limits, the key guard): with Redis unreachable
    # they fail open, within a second, rather than answer 500 (shop/project/counter_cache.py says why).
    caches = {"default": {"BACKEND": "shop.project.counter_cache.CounterCache", "LOCATION": url,
                          "KEY_PREFIX": "kamidrop", "OPTIONS": cache_options}}
    # Every queue a job may be enqueued on must be named here: django-rq silently
    # drops commit-aware enqueues to unknown queues. The queue class gives each
    # queue the shared client of its connection, through the breaker.
    queue_class = "shop.project.redis_breaker.BreakerQueue"
    queues = {
        "payments": {**connection, "DEFAULT_TIMEOUT": 180, "QUEUE_CLASS": queue_class},
        "default": {**connection, "DEFAULT_TIMEOUT": 60, "QUEUE_CLASS": queue_class},
        "delivery": {**connection, "DEFAULT_TIMEOUT": 60, "QUEUE_CLASS": queue_class},
    }
    return {"CACHES": caches, "RQ_QUEUES": queues}


def redis_settings(*, service_url: Callable[[], str]) -> dict:
    """The Redis settings from the environment. ``service_url`` gives REDIS_URL
    when no Sentinel is set (in development, the embedded server's)."""
    sentinels = [_host_port(item) for item in env_list("REDIS_SENTINELS", [])]
    master = env_str("REDIS_SENTINEL_MASTER")
    if sentinels and not master:
        raise ImproperlyConfigured("REDIS_SENTINEL_MASTER must be set when REDIS_SENTINELS is")
    url = (env_str("REDIS_URL") or f"redis://{master}/0") if sentinels else service_url()
    # Seconds to wait for a TCP connect to Redis (it is on the LAN), and how long an
    # unreachable Redis is then not tried again (shop/project/redis_breaker.py).
    connect_timeout = float(os.environ.get("REDIS_CONNECT_TIMEOUT", "0.25"))
    sentinel_password = env_str("REDIS_SENTINEL_PASSWORD")
    return {
        "REDIS_URL": url,
        "REDIS_SENTINELS": sentinels,
        "REDIS_SENTINEL_MASTER": master,
        "REDIS_SENTINEL_PASSWORD": sentinel_password,
        "REDIS_CONNECT_TIMEOUT": connect_timeout,
        "REDIS_BREAKER_SECONDS": float(os.environ.get("REDIS_BREAKER_SECONDS", "5")),
        **redis_stores(url=url, sentinels=sentinels, master=master, sentinel_password=sentinel_password,
                       connect_timeout=connect_timeout),
    }
