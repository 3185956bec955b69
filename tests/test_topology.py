"""docker-compose.yml's topology run on this machine from Debian's packages
(bench/topology.py): HAProxy with the compose file's configuration in front of
two gunicorns, PgBouncer in transaction mode in front of PostgreSQL, two RQ
workers; real traffic through it. One module-scoped topology (about 15 s);
haproxy and pgbouncer are installed with apt-get when missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR / "bench"))

from topology import PY, Topology, buyer_address, traffic_run, verdict  # noqa: E402 - bench/ on the path first

# Reads a table row by row through a server-side cursor (QuerySet.iterator()
# outside a transaction: WITH HOLD) while another client of the same PgBouncer
# pool holds, inside a transaction, the server connection the cursor lives on.
HELD_CURSOR_SCRIPT = """
import os
import psycopg
from django.contrib.contenttypes.models import ContentType

rows = ContentType.objects.order_by("id").iterator(chunk_size=1)
next(rows)
with psycopg.connect(os.environ["DATABASE_URL"]) as other:
    other.execute("SELECT 1")
    try:
        print("read", 1 + sum(1 for _ in rows))
    except Exception as exc:
        print("failed", type(exc).__name__)
"""


@pytest.fixture(scope="module")
def topology():
    # a database of its own per run and per xdist worker: both workers may start
    # this module's topology, and one's teardown must not drop the other's
    name = f"topology_{os.environ.get('KAMIDROP_TEST_DB', 'test')}_{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    with Topology(name=name) as running:
        run = traffic_run(running, checkouts=8)
        yield running, run


def test_checkouts_and_a_payment_go_through_haproxy_and_pgbouncer_to_both_webs(topology):
    # given: 8 buyers, each from an address of its own and each writing a forged
    # X-Forwarded-For; then a signed notify for the first order
    _, run = topology
    # then: every check of the benchmark holds
    assert verdict(run) == []
    # each order carries the address HAProxy saw, never the one the buyer wrote
    assert sorted(run["client_ips"].values()) == sorted(buyer_address(i) for i in range(8))
    assert not any(ip.startswith("203.0.113.") for ip in run["client_ips"].values())
    # the notify was acknowledged, the key shown and emailed, the audit clean
    assert run["notify"] == (200, "success")
    assert run["key"]["status"] == "DELIVERED" and len(run["key"]["keys"]) == 1
    assert run["emailed"] == 1 and run["audit"][0] == 0
    # HAProxy spread the checkouts round robin over the two gunicorns
    assert run["served"] == {"web0": 4, "web1": 4}
    # the apps' connections shared fewer PostgreSQL connections, in transaction mode
    assert run["pool_mode"] == ["transaction"]
    assert 0 < run["servers"] < run["clients"]


@pytest.mark.parametrize(("pooler", "expected"), [("transaction", "read"), ("", "failed InvalidCursorName")])
def test_transaction_pooling_needs_db_pooler_to_read_without_server_side_cursors(topology, pooler, expected):
    # given: the apps' settings behind the topology's PgBouncer (a pool of two of
    # its own, so that nothing else takes its connections), with DB_POOLER or without
    running, _ = topology
    env = {**running.env, "DATABASE_URL": running.pooled_url(f"{running.database}_cursors"), "DB_POOLER": pooler}
    # when
    result = subprocess.run([PY, "manage.py", "shell", "-c", HELD_CURSOR_SCRIPT], check=False, cwd=BASE_DIR,
                            env=env, capture_output=True, text=True, timeout=120)
    # then: with DB_POOLER=transaction the rows come whole, without it the
    # cursor is asked for on a server connection that never had it
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(expected)
