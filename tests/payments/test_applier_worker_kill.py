"""Fault test: a real worker process dies holding the applier's wake-up job.
Later notices still wake an applier within seconds, and every order is paid
within 10 s of its notice, with no sweeper.

The wake-up is only at risk between a worker taking the job off the queue
and the job starting (it clears the wake-up flag as it starts; a job still
queued survives any worker). A kill lands in that window by chance in
production; here the worker is frozen (SIGSTOP) while it waits on the
queues, so that Redis hands it the next job, and then SIGKILLed: the job is
gone, deterministically."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from payments.models import PaymentEvent
from payments.services.inbox import APPLY_FLAG, APPLY_FLAG_TTL
from shop.models import Order
from tests.conftest import NOTIFY_URL, sandbox_notice

BASE_DIR = Path(__file__).resolve().parents[2]
PAID_WITHIN_SECONDS = 10


def _kill_with_children(process: subprocess.Popen) -> None:
    """SIGKILL a worker and its work horse (rq puts the horse in a process
    group of its own, so killing the worker's group alone would spare it)."""
    if process.poll() is not None:
        return
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    for pid in [process.pid, *map(int, children)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


def _worker_start(tmp_path: Path, name: str, smtp_port: int) -> subprocess.Popen:
    """A real worker on production's queues, on exactly this test's database and Redis db."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.project.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "SECRET_KEY": django_settings.SECRET_KEY,
        "KEY_ENCRYPTION_KEYS": ",".join(django_settings.KEY_ENCRYPTION_KEYS),
        "KEY_FINGERPRINT_PEPPER": django_settings.KEY_FINGERPRINT_PEPPER,
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "delivery", "payments", "default"], cwd=BASE_DIR, env=env,
        stdout=(tmp_path / f"{name}.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait_listening(redis, tmp_path: Path, name: str) -> None:
    """Until the (only) worker on this test's Redis db is blocked on the queues, waiting for a job."""
    db = str(redis.connection_pool.connection_kwargs.get("db", 0))
    deadline = time.monotonic() + 60
    while not any(c.get("cmd") == "blpop" and "b" in c.get("flags", "") and c.get("db") == db
                  for c in redis.client_list()):
        assert time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()
        time.sleep(0.02)


def _worker_killed_taking_a_job(worker: subprocess.Popen, queue, tmp_path: Path, notify) -> None:
    """Freeze the idle worker, let ``notify`` wake the applier (Redis hands
    the job to the frozen worker), and kill the worker: the job is lost
    while its wake-up flag is set."""
    _wait_listening(queue.connection, tmp_path, "a")
    os.kill(worker.pid, signal.SIGSTOP)
    notify()
    deadline = time.monotonic() + 5
    while queue.count:  # the job leaves the queue for the frozen worker's socket
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _kill_with_children(worker)
    assert queue.connection.exists(APPLY_FLAG)  # the situation under test: a wake-up pending, its job gone


def _latencies_when_paid(orders: list[Order], *, deadline: float) -> dict[str, float | None]:
    """Seconds from each notice stored to its order paid (None: not paid),
    once all are paid or at ``deadline`` (monotonic)."""
    numbers = [order.order_no for order in orders]
    while True:
        received = dict(PaymentEvent.objects.filter(reference__in=numbers).values_list("reference", "received_at"))
        paid = dict(Order.objects.filter(order_no__in=numbers).values_list("order_no", "paid_at"))
        latencies = {no: (paid[no] - received[no]).total_seconds() if paid[no] else None for no in numbers}
        if None not in latencies.values() or time.monotonic() > deadline:
            return latencies
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_with_the_wake_up_job_mid_burst_does_not_stall_payments(
    client, queued, make_product, make_unpaid_order, smtp_server, settings, tmp_path
):
    # given: sixty unpaid orders and a worker listening on production's queues
    product = make_product(keys=60)
    orders = [make_unpaid_order(product=product, email=f"buyer{i}@example.com") for i in range(60)]
    notified = iter(orders)

    def notify(pause: float = 0.0) -> None:
        assert client.post(NOTIFY_URL, sandbox_notice(next(notified))).content == b"success"
        time.sleep(pause)

    worker_a = _worker_start(tmp_path, "a", settings.EMAIL_PORT)
    worker_b = None
    try:
        _wait_listening(queued.connection, tmp_path, "a")
        # when: the first third of the burst, applied by A as it comes
        for _ in range(20):
            notify(0.05)
        # and: A dies just as it takes the next wake-up's job; B starts; the burst goes on for 4 s
        _worker_killed_taking_a_job(worker_a, queued, tmp_path, notify)
        worker_b = _worker_start(tmp_path, "b", settings.EMAIL_PORT)
        for _ in range(39):
            notify(0.1)
        latencies = _latencies_when_paid(orders, deadline=time.monotonic() + PAID_WITHIN_SECONDS + 1)
    finally:
        _kill_with_children(worker_a)
        if worker_b is not None:
            _kill_with_children(worker_b)
    # then: every order paid, none later than 10 s after its notice
    late = {no: seconds for no, seconds in latencies.items() if seconds is None or seconds > PAID_WITHIN_SECONDS}
    assert late == {}, f"max {max((s for s in latencies.values() if s is not None), default=0):.1f} s; late: {late}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_after_an_idle_worker_dies_taking_a_wake_up_the_next_notices_are_paid_within_seconds(
    client, queued, make_product, make_unpaid_order, smtp_server, settings, tmp_path
):
    # given: an idle worker that dies as it takes the wake-up job of a lone notice
    product = make_product(keys=11)
    first, *later = [make_unpaid_order(product=product, email=f"buyer{i}@example.com") for i in range(11)]
    worker_a = _worker_start(tmp_path, "a", settings.EMAIL_PORT)
    worker_b = None
    try:
        _worker_killed_taking_a_job(worker_a, queued, tmp_path, lambda: client.post(NOTIFY_URL, sandbox_notice(first)))
        # when: ten notices arrive a few seconds later, once the lost job's
        # wake-up flag has lapsed (APPLY_FLAG_TTL), and a new worker starts
        deadline = time.monotonic() + APPLY_FLAG_TTL + 5
        while queued.connection.exists(APPLY_FLAG):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for order in later:
            assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
        worker_b = _worker_start(tmp_path, "b", settings.EMAIL_PORT)
        latencies = _latencies_when_paid([first, *later], deadline=time.monotonic() + PAID_WITHIN_SECONDS + 1)
    finally:
        _kill_with_children(worker_a)
        if worker_b is not None:
            _kill_with_children(worker_b)
    # then: the ten are paid within 10 s of their notices; the lone one with them
    late = {order.order_no: latencies[order.order_no] for order in later
            if latencies[order.order_no] is None or latencies[order.order_no] > PAID_WITHIN_SECONDS}
    assert late == {}, f"late: {late}"
    assert latencies[first.order_no] is not None
