"""The cache backend of the shop's counters (django-ratelimit, inventory.keyguard):
Redis, and while Redis cannot be reached, no counters instead of a 500.

Failing open, not answering 503, is deliberate. These counters only slow
abuse down; what must not be lost lives in PostgreSQL, the source of truth:
orders, stock holds, payments, redemptions. With Redis down the shop still
sells, and every checkout is still screened by riskctl's rules, which count
orders, emails and failed payments per IP, device and email in the database
(riskctl.features). A 503 would turn a Redis outage into a sales outage and a
merchant integration outage, for nothing the database does not hold. /healthz
answers 503 while Redis is down, so the monitors page someone, and every call
that missed Redis is logged here.
"""

from __future__ import annotations

import logging

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


def _log_unreachable(operation: str, exc: Exception) -> None:
    logger.warning("counter cache: Redis unreachable on %s (%s); counting nothing", operation, type(exc).__name__)


class CounterCache(RedisCache):
    """RedisCache whose unreachable server reads as an empty cache: ``get``
    gives the default, ``add`` and ``set`` store nothing, ``incr`` raises
    ValueError as for a missing key (django-ratelimit then fails open with
    RATELIMIT_FAIL_OPEN; keyguard counts 1). Other Redis errors still raise."""

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().add(key, value, timeout, version)
        except _UNREACHABLE as exc:
            _log_unreachable("add", exc)
            return False

    def get(self, key, default=None, version=None):
        try:
            return super().get(key, default, version)
        except _UNREACHABLE as exc:
            _log_unreachable("get", exc)
            return default

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            super().set(key, value, timeout, version)
        except _UNREACHABLE as exc:
            _log_unreachable("set", exc)

    def incr(self, key, delta=1, version=None):
        try:
            return super().incr(key, delta, version)
        except _UNREACHABLE as exc:
            _log_unreachable("incr", exc)
            raise ValueError("counter unavailable: Redis unreachable") from None
