"""DATABASE_URL → DATABASES: one host, a socket directory, and the multi-host
list a failover needs (libpq tries the hosts in turn, a dead one for one
connect timeout)."""

import os
import socket
import subprocess
import sys
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper

from shop.project.envconfig import database_from_url
from tests.test_settings import BASE_DIR, PRODUCTION


def test_one_host_and_port():
    # when
    entry = database_from_url("postgres://shop:p%40ss@db.example.com:5433/kamidrop?sslmode=require")

    # then
    assert (entry["HOST"], entry["PORT"], entry["USER"], entry["PASSWORD"], entry["NAME"]) == (
        "db.example.com", "5433", "shop", "p@ss", "kamidrop")
    assert entry["OPTIONS"] == {"sslmode": "require"}


def test_several_hosts_become_libpq_lists_and_the_session_attribute_is_kept():
    # when
    entry = database_from_url(
        "postgres://shop:pw@10.0.0.1:5432,10.0.0.2:6432,[::1]:5434/kamidrop?target_session_attrs=read-write")

    # then
    assert entry["HOST"] == "10.0.0.1,10.0.0.2,::1"
    assert entry["PORT"] == "5432,6432,5434"
    assert (entry["USER"], entry["PASSWORD"], entry["NAME"]) == ("shop", "pw", "kamidrop")
    assert entry["OPTIONS"] == {"target_session_attrs": "read-write"}


def test_hosts_without_ports_keep_libpq_defaults():
    # when
    some = database_from_url("postgres://u@db1,db2:6432/shop")
    none = database_from_url("postgres://u@db1,db2/shop")

    # then
    assert (some["HOST"], some["PORT"]) == ("db1,db2", ",6432")
    assert (none["HOST"], none["PORT"]) == ("db1,db2", "")


def test_a_port_that_is_not_a_number_is_refused():
    with pytest.raises(ImproperlyConfigured):
        database_from_url("postgres://u@db1:5432,db2:x/shop")


@pytest.mark.django_db
def test_django_connects_through_a_host_list_whose_first_host_is_down(tmp_path):
    # given: the test database's server, listed after a socket directory where nothing listens
    real = connection.settings_dict
    url = f"postgres://{real['USER']}:{real['PASSWORD']}@/{real['NAME']}?host={tmp_path},{real['HOST']}"
    entry = database_from_url(url)
    settings_dict = {**real, **{k: entry[k] for k in ("HOST", "PORT", "NAME", "USER", "PASSWORD")},
                     "OPTIONS": {**entry["OPTIONS"], "target_session_attrs": "read-write"}}

    # when
    other = DatabaseWrapper(settings_dict, alias="multi_host")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT current_database(), pg_is_in_recovery()")
            row = cursor.fetchone()
    finally:
        other.close()

    # then
    assert row == (real["NAME"], False)


def _blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A TCP address that answers nothing, as a dead machine's: a listener
    never accepting, its accept queue full, so the kernel drops the SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.2)
    return listener, fillers


def test_the_connect_timeout_given_applies_unless_the_url_says_otherwise():
    assert database_from_url("postgres://u@db1/shop", connect_timeout=3)["OPTIONS"] == {"connect_timeout": "3"}
    assert database_from_url("postgres://u@db1/shop?connect_timeout=10", connect_timeout=3)["OPTIONS"] == {
        "connect_timeout": "10"}


@pytest.mark.parametrize(("env", "expected"), [({}, "3"), ({"DB_CONNECT_TIMEOUT": "7"}, "7")])
def test_the_settings_give_the_database_a_connect_timeout(tmp_path, env, expected):
    # when: production settings with a host list
    result = _settings_print('settings.DATABASES["default"]["OPTIONS"]["connect_timeout"]', tmp_path,
                             DATABASE_URL="postgres://u:p@db1:5432,db2:5432/shop?target_session_attrs=read-write",
                             **env)

    # then
    assert result.stdout.strip() == expected, result.stderr[-2000:]


def _settings_print(expression: str, tmp_path, **overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DB_CONNECT_TIMEOUT"}
    env.update({**PRODUCTION, **overrides, "KAMIDROP_DATA_DIR": str(tmp_path),
                "DJANGO_SETTINGS_MODULE": "shop.project.settings"})
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.django_db
def test_a_dead_first_host_costs_one_connect_timeout_not_the_kernels_two_minutes():
    # given: the first host drops packets (a dead machine), the second is the test database's server
    listener, fillers = _blackhole()
    real = connection.settings_dict
    entry = database_from_url(f"postgres://{real['USER']}@127.0.0.1:{listener.getsockname()[1]}/{real['NAME']}",
                              connect_timeout=2)
    settings_dict = {**real, "HOST": f"{entry['HOST']},{real['HOST']}",
                     "PORT": f"{entry['PORT']},{real['PORT'] or 5432}", "OPTIONS": entry["OPTIONS"]}

    # when
    started = time.monotonic()
    other = DatabaseWrapper(settings_dict, alias="dead_first")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            row = cursor.fetchone()
    finally:
        other.close()
        for sock in (listener, *fillers):
            sock.close()

    # then: the second host answered after one timeout on the first
    assert row == (real["NAME"],)
    assert 2 <= time.monotonic() - started < 6
