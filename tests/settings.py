"""Test settings: the project's settings, with the test run kept apart.

PostgreSQL: Django's test runner creates its own ``test_<name>`` database on
the same server. Redis: a database number of its own (flushed per test), so a
running ``make run`` worker never picks up a test's jobs.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from shop.project.settings import *  # noqa: F401,F403
from shop.project.settings import DATABASES, REDIS_URL, RQ_QUEUES


def redis_db_for_worker(environ) -> int:
    """KAMIDROP_TEST_REDIS_DB (default 9), plus N for pytest-xdist's worker gwN
    (`make test` runs two): each worker flushes its own db before every test.
    Redis has dbs 0–15 and `make run` uses 0, so a run with w workers needs a
    base from 1 to 16 - w."""
    base = int(environ.get("KAMIDROP_TEST_REDIS_DB", "9"))
    worker = environ.get("PYTEST_XDIST_WORKER", "gw0")
    db = base + int(worker.removeprefix("gw"))
    if not 1 <= db <= 15:
        workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        raise ImproperlyConfigured(
            f"test worker {worker} would use Redis db {db} (KAMIDROP_TEST_REDIS_DB={base}): dbs 1-15 only, 0 is "
            f"`make run`'s; with {workers} worker(s) choose a base from 1 to {16 - workers}"
        )
    return db


# Two test runs at once on one machine (two engineers, two terminals) must not
# share a database or a Redis db: KAMIDROP_TEST_DB / KAMIDROP_TEST_REDIS_DB
# give a run its own. pytest-django adds the xdist worker's id to the
# database's name (test_kd_gw0, test_kd_gw1), and redis_db_for_worker its number.
TEST_REDIS_DB = redis_db_for_worker(os.environ)
if os.environ.get("KAMIDROP_TEST_DB"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["KAMIDROP_TEST_DB"]}


def _with_db(url: str, db: int) -> str:
    # A ?db= query wins over a /N path in redis-py, for redis:// and unix:// alike.
    base, _, query = url.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("db=")]
    return f"{base}?{'&'.join([*params, f'db={db}'])}"


REDIS_URL = _with_db(REDIS_URL, TEST_REDIS_DB)
# Through a Sentinel (REDIS_SENTINELS set) a queue names its database as DB, not in a URL.
RQ_QUEUES = {name: {**config, **({"DB": TEST_REDIS_DB} if "SENTINELS" in config else {"URL": REDIS_URL})}
             for name, config in RQ_QUEUES.items()}
# The payment applier runs in the request that woke it (same code, same job,
# no worker): a test sees the order paid when the notify returns. The queued
# path itself is tested with ASYNC switched back on (tests/payments/test_inbox.py).
RQ_QUEUES["payments"]["ASYNC"] = False
CACHES = {"default": {**CACHES["default"], "LOCATION": REDIS_URL}}  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SANDBOX_ENABLED = True
SANDBOX_SECRET = "test-sandbox-secret"
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}  # noqa: F405
# Tests edit rules and thresholds and expect the next assessment to see them.
RISK_CONFIG_CACHE_SECONDS = 0
PAYMENT_METHODS_CACHE_SECONDS = 0  # tests edit payment methods and expect the next request to see them
# Every test buyer is 127.0.0.1 and most share an email: the cap on live
# unpaid orders per buyer is lifted here; tests/shop/test_unpaid_cap.py sets
# the production values (3 per product, 5 in all) and tests them.
UNPAID_ORDERS_PER_PRODUCT = 10_000
UNPAID_ORDERS_MAX = 10_000
# Uploaded pictures (product images, the WeChat QR) of a test run go to a
# folder of its own, never into the dev shop's .data/media.
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="kamidrop-test-media-"))
atexit.register(shutil.rmtree, MEDIA_ROOT, ignore_errors=True)
