"""Test settings: the project's settings, with the test run kept apart.

PostgreSQL: Django's test runner creates its own ``test_<name>`` database on
the same server. Redis: a database number of its own (flushed per test), so a
running ``make run`` worker never picks up a test's jobs.
"""

from shop.settings import *  # noqa: F401,F403
from shop.settings import REDIS_URL, RQ_QUEUES

TEST_REDIS_DB = 9


def _with_db(url: str, db: int) -> str:
    # A ?db= query wins over a /N path in redis-py, for redis:// and unix:// alike.
    base, _, query = url.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("db=")]
    return f"{base}?{'&'.join([*params, f'db={db}'])}"


REDIS_URL = _with_db(REDIS_URL, TEST_REDIS_DB)
RQ_QUEUES = {name: {**config, "URL": REDIS_URL} for name, config in RQ_QUEUES.items()}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SANDBOX_ENABLED = True
SANDBOX_SECRET = "test-sandbox-secret"
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}  # noqa: F405
