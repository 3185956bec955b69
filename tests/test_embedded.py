"""Embedded PostgreSQL/Redis by default; servers from DATABASE_URL / REDIS_URL when set."""

import os
import subprocess
import sys
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.db import connection

from shop.models import Product
from shop.project import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def test_embedded_servers_are_reused_not_restarted():
    # given: the servers this session already runs
    started_before = list(embedded.started)
    # when
    again_db = embedded.postgres_ensure()
    again_redis = embedded.redis_ensure()
    # then
    assert embedded.started == started_before
    assert again_db == settings.DATABASE_URL
    assert again_redis == settings.REDIS_URL.split("?")[0]


@pytest.mark.django_db(transaction=True)
def test_urls_in_environment_replace_the_embedded_servers(tmp_path, make_product):
    # given: URLs pointing at this test's database and Redis db, and an empty
    # data directory where the embedded servers would be created if used
    make_product(slug="only-in-the-test-database")
    db = connection.settings_dict
    database_url = f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.project.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "KAMIDROP_DATA_DIR": str(tmp_path),
        "DEBUG": "1",
    }
    script = (
        "import django_rq; from shop.models import Product; "
        "django_rq.get_connection('default').set('kamidrop:url-test', 'seen'); "
        "print(','.join(Product.objects.values_list('slug', flat=True)))"
    )
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "only-in-the-test-database"
    assert django_rq.get_connection("default").get("kamidrop:url-test") == b"seen"
    assert not (tmp_path / "pg").exists()
    assert not (tmp_path / "redis").exists()
    assert Product.objects.count() == 1
