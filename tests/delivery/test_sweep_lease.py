"""The sweeper's leadership: a lease row, taken and renewed on the database's
clock, that works through PgBouncer's transaction pooling (no session state).
Two sweepers on two "machines" never both act; a dead leader's lease expires
and the other takes over; a leader whose lease was taken stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from delivery.models import Lease, SweepRun
from delivery.services import lease_hold, lease_holder_new, lease_release
from shop.models import Order, OrderStatus
from shop.ops.sweep import SWEEP_LEASE, sweep_run

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_one_holder_at_a_time_and_the_holder_renews():
    # when
    first = lease_hold(name="job", holder="a", seconds=30)
    other = lease_hold(name="job", holder="b", seconds=30)
    before = Lease.objects.get(name="job")
    renewed = lease_hold(name="job", holder="a", seconds=60)
    # then
    after = Lease.objects.get(name="job")
    assert (first, other, renewed) == (True, False, True)
    assert after.holder == "a"
    assert after.acquired_at == before.acquired_at
    assert after.expires_at > before.expires_at
    assert timedelta(seconds=59) < after.expires_at - _db_now() <= timedelta(seconds=60)


@pytest.mark.django_db
def test_an_expired_lease_goes_to_the_next_contender_and_its_old_holder_cannot_renew():
    # given: a lease that lapsed (its holder died without giving it back)
    assert lease_hold(name="job", holder="dead", seconds=0.2)
    time.sleep(0.3)
    # when
    taken = lease_hold(name="job", holder="alive", seconds=30)
    renewed_by_dead = lease_hold(name="job", holder="dead", seconds=30)
    # then
    assert (taken, renewed_by_dead) == (True, False)
    lease = Lease.objects.get(name="job")
    assert lease.holder == "alive"
    assert lease.acquired_at <= _db_now()


@pytest.mark.django_db
def test_a_released_lease_is_taken_at_once_and_only_its_holder_releases_it():
    # given
    assert lease_hold(name="job", holder="a", seconds=60)
    # when
    by_other = lease_release(name="job", holder="b")
    by_holder = lease_release(name="job", holder="a")
    # then
    assert (by_other, by_holder) == (False, True)
    assert lease_hold(name="job", holder="b", seconds=60)
    assert lease_release(name="job", holder="a") is False


@pytest.mark.django_db
def test_the_lease_runs_on_the_database_clock_not_the_callers():
    # given: the lease lapsed on the database's clock, while the caller's clock says it has not
    assert lease_hold(name="job", holder="a", seconds=3600)
    Lease.objects.filter(name="job").update(expires_at=_db_now() - timedelta(seconds=1))
    # when
    taken = lease_hold(name="job", holder="b", seconds=60)
    # then
    assert taken is True


def test_holder_ids_differ_between_processes_and_runs():
    # when
    ids = {lease_holder_new() for _ in range(3)}
    # then
    assert len(ids) == 3
    assert all(re.fullmatch(rf".+:{os.getpid()}:[0-9a-f]{{8}}", i) for i in ids)


_STEAL_ON_EXPIRE = """
CREATE FUNCTION pg_temp.steal_sweep_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE delivery_lease SET holder = 'intruder', expires_at = clock_timestamp() + interval '1 hour'
     WHERE name = 'sweep';
    RETURN NULL;
END $$;
CREATE TRIGGER steal_sweep_lease AFTER UPDATE ON shop_order
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.steal_sweep_lease();
"""


@pytest.mark.django_db
def test_a_leader_whose_lease_is_taken_midway_stops_before_its_next_step(make_product, make_unpaid_order):
    # given: an unpaid order past its hold, and another machine that takes the
    # lease the moment the expiry step writes (a trigger in this test's
    # transaction, dropped with it)
    order = make_unpaid_order(product=make_product(keys=1))
    Order.objects.filter(pk=order.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    with connection.cursor() as cursor:
        cursor.execute(_STEAL_ON_EXPIRE)
    # when
    report = sweep_run()
    # then: the expiry ran, nothing after it did, and the lease stays the intruder's
    assert (report.ran, report.expired, report.lost_lease) == (True, 1, True)
    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED
    assert SweepRun.objects.count() == 0
    assert Lease.objects.get(name=SWEEP_LEASE).holder == "intruder"


# --- two sweepers on two "machines": two processes, two connections, two holder ids ---


def _loop(tmp_path: Path, name: str, *, every: float, lease: float) -> tuple[subprocess.Popen, Path]:
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop.project.settings", "DEBUG": "1",
           "DATABASE_URL": f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
           "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / f"{name}.out"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sweep", "--every", str(every), "--lease-seconds", str(lease)],
        cwd=BASE_DIR, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, text=True,
    )
    return process, out


def _holder_of(out: Path) -> str | None:
    match = re.search(r"^sweeper (\S+):", out.read_text(), re.MULTILINE)
    return match[1] if match else None


def _wait(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _lease() -> Lease | None:
    return Lease.objects.filter(name=SWEEP_LEASE).first()


def _passes(text: str) -> int:
    return text.count("re-enqueued 0 deliveries")


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_never_both_act_and_a_dead_leaders_lease_passes_to_the_other(tmp_path):
    every, ttl = 0.2, 2.0
    # given: two sweep loops, each its own process, connection and holder id
    one, one_out = _loop(tmp_path, "one", every=every, lease=ttl)
    two, two_out = _loop(tmp_path, "two", every=every, lease=ttl)
    try:
        _wait(lambda: _holder_of(one_out) and _holder_of(two_out), timeout=60, what="both loops")
        holders = [_holder_of(one_out), _holder_of(two_out)]
        processes = dict(zip(holders, [(one, one_out), (two, two_out)], strict=True))
        leader = _wait(lambda: (lease := _lease()) and lease.holder, timeout=30, what="a leader")
        [follower] = [h for h in holders if h != leader]
        _wait(lambda: processes[follower][1].read_text().count("another sweeper holds the lease") >= 5,
              timeout=30, what="the follower's passes")
        # when: the leader dies without giving the lease back
        before_kill = _lease()
        processes[leader][0].send_signal(signal.SIGKILL)
        processes[leader][0].wait(timeout=10)
        killed_at = time.monotonic()
        follower_before = processes[follower][1].read_text()
        leader_text = processes[leader][1].read_text()
        after_kill = _wait(lambda: (lease := _lease()) and lease.holder == follower and lease,
                           timeout=ttl + 10, what="the takeover")
        took = time.monotonic() - killed_at
        # then: while both lived only the leader acted; the follower took over
        # once the dead leader's lease had expired, within one lease and one period
        assert _passes(leader_text) >= 1
        assert _passes(follower_before) == 0
        assert after_kill.acquired_at >= before_kill.expires_at
        assert took <= ttl + every + 1.5
        _wait(lambda: _passes(processes[follower][1].read_text()) >= 1, timeout=10, what="the new leader's pass")

        # when: a third machine takes the lease from the new leader (as after a long pause)
        Lease.objects.filter(name=SWEEP_LEASE).update(holder="intruder", expires_at=timezone.now() + timedelta(hours=1))
        _wait(lambda: "lost the sweep lease" in processes[follower][1].read_text(), timeout=10, what="the loss")
        run_after_loss = SweepRun.objects.get().finished_at
        passes_after_loss = _passes(processes[follower][1].read_text())
        time.sleep(5 * every)
        # then: it stopped acting
        assert SweepRun.objects.get().finished_at == run_after_loss
        assert _passes(processes[follower][1].read_text()) == passes_after_loss

        # when: the intruder gives the lease back, the loop leads again; then it is stopped cleanly
        assert lease_release(name=SWEEP_LEASE, holder="intruder")
        _wait(lambda: _lease().holder == follower, timeout=10, what="leading again")
        processes[follower][0].send_signal(signal.SIGTERM)
        processes[follower][0].wait(timeout=30)
        # then: it gave the lease back on its way out
        assert processes[follower][0].returncode == 0, processes[follower][1].read_text()
        lease = _lease()
        assert (lease.holder, lease.expires_at <= _db_now()) == (follower, True)
    finally:
        for process in (one, two):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

