"""With DEBUG off the settings refuse to start without what production needs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "s" * 50,
    "KEY_ENCRYPTION_KEYS": "Z" * 43 + "=",
    "KEY_FINGERPRINT_PEPPER": "pepper",
    "ALLOWED_HOSTS": "shop.example.com",
    "SITE_URL": "https://shop.example.com",
    "DATABASE_URL": "postgres://u:p@127.0.0.1:1/db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "EMAIL_URL": "smtp://shop:pw@smtp.example.com:587?tls=1",
}


def _import_settings(tmp_path, **overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.update({**PRODUCTION, **overrides, "KAMIDROP_DATA_DIR": str(tmp_path)})
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-c", "import shop.project.settings"], check=False, cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=60)


def test_production_settings_import_with_everything_set(tmp_path):
    result = _import_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis").exists()


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEY_ENCRYPTION_KEYS", "KEY_FINGERPRINT_PEPPER", "ALLOWED_HOSTS",
                                     "SITE_URL", "DATABASE_URL", "REDIS_URL", "EMAIL_URL"])
def test_production_settings_refuse_to_start_without(tmp_path, missing):
    # when
    result = _import_settings(tmp_path, **{missing: None})
    # then
    assert result.returncode == 1
    assert f"ImproperlyConfigured: {missing} must be set when DEBUG is off" in result.stderr
    # and no embedded server was started in its place
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis").exists()


def test_console_email_is_refused_with_debug_off_unless_allowed(tmp_path):
    # when: a deploy that kept console email
    refused = _import_settings(tmp_path, EMAIL_URL="console://")
    allowed = _import_settings(tmp_path, EMAIL_URL="console://", EMAIL_CONSOLE_ALLOWED="1")
    # then
    assert refused.returncode == 1
    assert "ImproperlyConfigured: EMAIL_URL is console:// with DEBUG off" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr


def test_hsts_is_on_by_default_behind_a_tls_proxy(tmp_path):
    code = "import shop.project.settings as s; print(s.SECURE_HSTS_SECONDS)"
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.update({**PRODUCTION, "KAMIDROP_DATA_DIR": str(tmp_path)})
    behind = subprocess.run([sys.executable, "-c", code], check=False, cwd=BASE_DIR,
                            env={**env, "BEHIND_TLS_PROXY": "1"}, capture_output=True, text=True, timeout=60)
    direct = subprocess.run([sys.executable, "-c", code], check=False, cwd=BASE_DIR, env=env, capture_output=True,
                            text=True, timeout=60)
    assert (behind.stdout.strip(), direct.stdout.strip()) == ("31536000", "0")


def test_production_settings_with_a_redis_sentinel_need_no_redis_url(tmp_path):
    # when: Redis is reached through Sentinel (REDIS_URL, naming a server, is left out)
    code = "import shop.project.settings as s; print(s.REDIS_URL, s.RQ_QUEUES['default']['MASTER_NAME'])"
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.update({**PRODUCTION, "KAMIDROP_DATA_DIR": str(tmp_path), "REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379",
                "REDIS_SENTINEL_MASTER": "shop"})
    del env["REDIS_URL"]
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=BASE_DIR, env=env, capture_output=True,
                            text=True, timeout=60)
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["redis://shop/0", "shop"]
    assert not (tmp_path / "redis").exists()


def _database_settings(tmp_path, **overrides) -> subprocess.CompletedProcess:
    code = ("import json, shop.project.settings as s; d = s.DATABASES['default']; "
            "print(json.dumps({'cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', False), 'options': d['OPTIONS'], "
            "'conn_max_age': d['CONN_MAX_AGE'], 'atomic': d['ATOMIC_REQUESTS']}))")
    env = {k: v for k, v in os.environ.items()
           if k not in PRODUCTION and k not in {"DB_POOLER", "DB_PREPARED_STATEMENTS"}}
    env.update({**PRODUCTION, **overrides, "KAMIDROP_DATA_DIR": str(tmp_path)})
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=60)


def test_transaction_pooling_turns_server_side_cursors_and_prepared_statements_off(tmp_path):
    import json

    # when: the apps behind PgBouncer in transaction mode, and straight on PostgreSQL
    pooled = _database_settings(tmp_path, DB_POOLER="transaction")
    direct = _database_settings(tmp_path)
    # then
    assert pooled.returncode == 0 and direct.returncode == 0, pooled.stderr + direct.stderr
    # (a dead host is given up after DB_CONNECT_TIMEOUT, 3 s, either way)
    assert json.loads(pooled.stdout) == {"cursors": True, "options": {"prepare_threshold": None,
                                                                      "connect_timeout": "3"},
                                         "conn_max_age": 60, "atomic": False}
    # straight on PostgreSQL the server binds the parameters, so psycopg prepares what runs often
    assert json.loads(direct.stdout) == {"cursors": False, "options": {"connect_timeout": "3",
                                                                       "server_side_binding": True,
                                                                       "prepare_threshold": 5},
                                         "conn_max_age": 60, "atomic": False}


def test_prepared_statements_can_be_turned_off(tmp_path):
    import json

    # when
    off = _database_settings(tmp_path, DB_PREPARED_STATEMENTS="0")
    session = _database_settings(tmp_path, DB_POOLER="session")
    # then
    assert off.returncode == 0 and session.returncode == 0, off.stderr + session.stderr
    assert json.loads(off.stdout)["options"] == {"connect_timeout": "3"}
    assert json.loads(session.stdout)["options"] == {"connect_timeout": "3", "server_side_binding": True,
                                                     "prepare_threshold": 5}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"DB_POOLER": "statement"}, "DB_POOLER must be one of ['', 'session', 'transaction'], got 'statement'"),
    ({"DB_POOLER": "transaction", "DATABASE_URL": "postgres://u:p@127.0.0.1:1/db?prepare_threshold=5"},
     "DATABASE_URL asks for prepared statements (prepare_threshold), which DB_POOLER=transaction cannot carry"),
    ({"DB_POOLER": "transaction", "DB_PREPARED_STATEMENTS": "1"},
     "DB_PREPARED_STATEMENTS=1, which DB_POOLER=transaction cannot carry"),
])
def test_settings_refuse_what_transaction_pooling_cannot_carry(tmp_path, overrides, message):
    result = _database_settings(tmp_path, **overrides)
    assert result.returncode == 1
    assert f"ImproperlyConfigured: {message}" in result.stderr
