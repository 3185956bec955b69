"""DATABASE_URL → DATABASES: one host, a socket directory, and the multi-host
list a failover needs (libpq tries the hosts in turn)."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper

from shop.project.envconfig import database_from_url


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
