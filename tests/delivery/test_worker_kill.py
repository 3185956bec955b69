"""Fault test: a real worker process is SIGKILLed in the middle of sending a
batch of emails. Nothing is lost (every email arrives, every order is
delivered) and the crash costs at most one duplicate, the message that was
on the wire, which the attempt log counts."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import django_rq
import pytest
from django.conf import settings as django_settings
from django.db import connection

from delivery.models import AttemptOutcome, DeliveryAttempt, DeliveryStatus
from delivery.services import deliveries_enqueue
from shop.models import OrderStatus
from shop.ops.sweep import sweep_run
from tests.conftest import NOTIFY_URL, sandbox_notice
from tests.delivery.conftest import email_of

BASE_DIR = Path(__file__).resolve().parents[2]


def _kill_with_children(pid: int) -> None:
    """SIGKILL a worker and its work horse (rq puts the horse in a session of
    its own, so killing the worker's process group alone would spare it)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in [pid, *map(int, children)]:
        os.kill(child, signal.SIGKILL)


def _worker_env(smtp_port: int) -> dict:
    """The worker talks to exactly this test's database and Redis db, and to the test SMTP server."""
    db = connection.settings_dict
    return {
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


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("held", "copies"), [(0, (2, 1)), (1, (1, 2))])
def test_worker_killed_mid_send_loses_nothing_and_duplicates_at_most_once(
    client, make_product, make_unpaid_order, smtp_server, settings, run_worker, tmp_path, held, copies
):
    # given: two paid orders whose emails wait in Redis as one batch job, and
    # an SMTP server that holds the DATA of message ``held`` (0: the first,
    # 1: the second, the first one accepted already) until we say so
    product = make_product(keys=2, slug="gift")
    orders = [make_unpaid_order(product=product, email=f"buyer{i}@example.com") for i in range(2)]
    for order in orders:
        assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
    django_rq.get_queue("delivery").empty()
    deliveries = [email_of(order) for order in orders]
    deliveries_enqueue(delivery_ids=[d.pk for d in deliveries])
    in_data, release = threading.Event(), threading.Event()

    async def handle_DATA(server, session, envelope):
        # The worst case: the server keeps the message although the client
        # dies before it hears the 250 (the classic duplicate after a crash).
        smtp_server.messages.append(envelope)
        if len(smtp_server.messages) <= held:
            return "250 OK"  # accepted before the kill: its receipt spares it a second copy
        in_data.set()
        while not release.is_set():
            await asyncio.sleep(0.02)
        return "250 OK"

    smtp_server.handle_DATA = handle_DATA
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "delivery"], cwd=BASE_DIR, env=_worker_env(settings.EMAIL_PORT),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        assert in_data.wait(timeout=60), (tmp_path / "worker.log").read_text()
        # when: the worker and its work horse die mid-send
        _kill_with_children(worker.pid)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        release.set()
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
        assert delivery.sending_started_at is not None
    # and: once the dead sender's claims lapse, the sweeper finds the batch
    # job dead and re-enqueues each delivery on its own job; a healthy worker sends
    settings.DELIVERY_SEND_LEASE_SECONDS = 1
    settings.SWEEP_ORPHAN_AFTER_SECONDS = 0
    time.sleep(1.1)
    del smtp_server.handle_DATA
    report = sweep_run()
    run_worker()
    # then: every email arrived; the one duplicate is the interrupted message,
    # never one accepted before the kill
    assert report.requeued == 2
    for order, delivery in zip(orders, deliveries):
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.sending_started_at) == (DeliveryStatus.SENT, 2, None)
        outcomes = list(
            DeliveryAttempt.objects.filter(delivery=delivery).order_by("number").values_list("outcome", flat=True)
        )
        assert outcomes == [AttemptOutcome.STARTED, AttemptOutcome.SENT]
        message_id = f"<delivery-{delivery.pk}.{order.order_no}@kamidrop.local>".encode()
        received = [m.content for m in smtp_server.messages if b"Message-ID: " + message_id in m.content]
        # at most one duplicate, and only where an attempt is left STARTED
        assert 1 <= len(received) <= 1 + outcomes.count(AttemptOutcome.STARTED)
        order.refresh_from_db()
        assert order.status == OrderStatus.DELIVERED
    first, second = (
        [m for m in smtp_server.messages if m.rcpt_tos == [f"buyer{i}@example.com"]] for i in range(2)
    )
    assert (len(first), len(second)) == copies
