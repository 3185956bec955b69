"""The sweeper: re-enqueues lost deliveries, expires unpaid orders, fills
orders waiting for stock, alerts on stuck orders; safe when two run at once."""

from datetime import timedelta
from io import StringIO

import django_rq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rq.intermediate_queue import IntermediateQueue
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from delivery.models import AlertKind, Delivery, DeliveryStatus, Lease, OwnerAlert, SweepRun
from delivery.services import deliveries_with_live_job, lease_hold
from delivery.worker import SWEEP_JOB_ID, SweepingWorker, sweep_periodic_register
from inventory.services import keys_import
from shop.models import Order, OrderEventType, OrderStatus
from shop.ops.sweep import SWEEP_LEASE
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db


def _sweep() -> str:
    out = StringIO()
    call_command("sweep", stdout=out)
    return out.getvalue().strip()


def _age(order, **delta) -> None:
    """Make an order's email delivery look as old as ``delta``."""
    Delivery.objects.filter(order=order).update(created_at=timezone.now() - timedelta(**delta))


def test_sweep_reenqueues_a_pending_delivery_whose_job_was_lost(paid_order, run_worker, smtp_server, redis_clean):
    # given: Redis lost the job (flushed), the delivery is older than the grace period
    redis_clean.flushdb()
    _age(paid_order, minutes=5)
    # when
    out = _sweep()
    run_worker()
    # then
    assert out == ("re-enqueued 1 deliveries, expired 0 unpaid orders, filled 0 orders from stock, 0 orders stuck, "
                   "0 manual orders overdue")
    assert email_of(paid_order).status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key) == (AlertKind.SWEEPER, "sweeper:requeued")


def test_sweep_leaves_a_delivery_with_a_live_job_alone(paid_order, run_worker, smtp_server):
    # given: the first attempt failed; the retry is scheduled
    smtp_server.refuse = True
    run_worker()
    _age(paid_order, minutes=5)
    job_id = email_of(paid_order).job_id
    # when
    out = _sweep()
    # then
    assert out.startswith("re-enqueued 0 deliveries")
    queue = django_rq.get_queue("delivery")
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [job_id]
    assert queue.job_ids == []
    assert OwnerAlert.objects.count() == 0


def test_sweep_leaves_a_young_delivery_alone(paid_order):
    # given: the job is gone but the delivery was just written (its enqueue may be on the way)
    django_rq.get_queue("delivery").empty()
    # when
    out = _sweep()
    # then
    assert out.startswith("re-enqueued 0 deliveries")
    assert django_rq.get_queue("delivery").job_ids == []


def test_sweep_never_resends_a_sent_delivery(paid_order, run_worker, smtp_server, redis_clean):
    # given
    run_worker()
    redis_clean.flushdb()
    _age(paid_order, minutes=5)
    # when
    _sweep()
    run_worker()
    # then
    assert len(smtp_server.messages) == 1
    assert email_of(paid_order).attempts == 1


def test_sweep_expires_unpaid_orders_past_their_hold_once(make_product, make_unpaid_order):
    # given
    product = make_product(keys=2)
    lapsed, holding = make_unpaid_order(product=product), make_unpaid_order(product=product)
    Order.objects.filter(pk=lapsed.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    Order.objects.filter(pk=holding.pk).update(hold_expires_at=timezone.now() + timedelta(minutes=10))
    # when
    first, second = _sweep(), _sweep()
    # then
    assert "expired 1 unpaid orders" in first and "expired 0 unpaid orders" in second
    lapsed.refresh_from_db()
    holding.refresh_from_db()
    assert (lapsed.status, holding.status) == (OrderStatus.EXPIRED, OrderStatus.PENDING_PAYMENT)
    assert list(lapsed.events.filter(type=OrderEventType.EXPIRED).values_list("actor", flat=True)) == ["system"]
    assert holding.events.filter(type=OrderEventType.EXPIRED).count() == 0


def test_sweep_fills_orders_waiting_for_stock(pay, make_product, make_unpaid_order, run_worker, smtp_server,
                                              django_capture_on_commit_callbacks):
    # given: paid while out of stock, then keys arrive outside the import service
    product = make_product(keys=0, slug="late")
    order = pay(make_unpaid_order(product=product))
    assert order.status == OrderStatus.AWAITING_STOCK
    keys_import(product=product, entries=[(1, "LATE-KEY-1")], source="test")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        out = _sweep()
    run_worker()
    # then
    assert "filled 1 orders from stock" in out
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert b"LATE-KEY-1" in smtp_server.messages[0].content


def test_sweep_alerts_once_on_orders_stuck_past_the_threshold(pay, make_product, make_unpaid_order, settings):
    # given: a paid order waiting for stock for an hour
    settings.SWEEP_STUCK_MINUTES = 30
    order = pay(make_unpaid_order(product=make_product(keys=0)))
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(hours=1))
    # when
    outs = [_sweep(), _sweep()]
    # then
    assert ["1 orders stuck," in o for o in outs] == [True, True]
    alert = OwnerAlert.objects.get(kind=AlertKind.SWEEPER)
    assert alert.subject == "1 paid order(s) not delivered after 30 minutes"
    assert alert.body == f"1 AWAITING_STOCK.\nOldest: {order.order_no}"
    assert alert.occurrences == 2


def test_sweep_records_its_last_run():
    # when
    _sweep()
    # then
    run = SweepRun.objects.get()
    assert run.name == "sweep"
    assert run.result == {"requeued": 0, "expired": 0, "filled": 0, "settled": 0, "stuck": 0, "overdue": 0,
                          "exports": {"expired": 0, "parts_deleted": 0, "resumed": 0}, "failed": []}
    assert run.finished_at >= run.started_at


def test_a_sweep_started_while_another_leads_does_nothing(make_product, make_unpaid_order):
    # given: another sweeper (another machine) holds the sweep lease, and there is work to do
    order = make_unpaid_order(product=make_product(keys=1))
    Order.objects.filter(pk=order.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_hold(name=SWEEP_LEASE, holder="other-machine:1:abcd", seconds=60)
    # when
    out = _sweep()
    # then
    assert out == "another sweeper holds the lease; nothing done"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert SweepRun.objects.count() == 0
    assert Lease.objects.get(name=SWEEP_LEASE).holder == "other-machine:1:abcd"


def test_a_one_off_sweep_gives_the_lease_back(make_product, make_unpaid_order):
    # when
    _sweep()
    # then: the next sweeper, whoever it is, leads at once
    assert lease_hold(name=SWEEP_LEASE, holder="next-machine:1:abcd", seconds=60)


def test_periodic_sweep_is_registered_once_and_repeats(run_worker, settings):
    # given
    settings.SWEEP_INTERVAL_SECONDS = 60
    queue = django_rq.get_queue("default")
    # when
    registered = [sweep_periodic_register(), sweep_periodic_register()]
    # then
    assert registered == [True, False]
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [SWEEP_JOB_ID]
    # and when it comes due, it sweeps and puts itself back on the schedule
    queue.enqueue_job(queue.fetch_job(SWEEP_JOB_ID))
    run_worker()
    job = queue.fetch_job(SWEEP_JOB_ID)
    assert job.get_status() == JobStatus.SCHEDULED
    assert SweepRun.objects.count() == 1


def test_the_project_worker_registers_the_sweep_when_it_starts():
    # given
    queue = django_rq.get_queue("default")
    worker = SweepingWorker([queue], connection=queue.connection)
    # when: a long-running worker starts (and stops after a second idle)
    worker.work(burst=False, max_idle_time=1)
    # then
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [SWEEP_JOB_ID]


def test_a_burst_worker_does_not_register_the_sweep(run_worker):
    # given
    queue = django_rq.get_queue("default")
    # when
    SweepingWorker([queue], connection=queue.connection).work(burst=True)
    # then
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == []


def test_sweeper_releases_a_retry_whose_scheduler_died(client, make_product, make_unpaid_order, run_worker,
                                                       smtp_server, settings, django_capture_on_commit_callbacks):
    # given: a failed send whose retry was scheduled for a time long past
    # (the worker holding the scheduler lock was killed)
    from datetime import timedelta

    import django_rq
    from django.utils import timezone
    from rq.registry import ScheduledJobRegistry

    from delivery.models import Channel, Delivery, DeliveryStatus
    from delivery.services import deliveries_requeue_orphans
    from tests.conftest import NOTIFY_URL, sandbox_notice

    settings.SWEEP_ORPHAN_AFTER_SECONDS = 5
    order = make_unpaid_order(product=make_product(keys=1))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    smtp_server.refuse = True
    run_worker()
    delivery = Delivery.objects.get(order=order, channel=Channel.EMAIL)
    queue = django_rq.get_queue("delivery")
    registry = ScheduledJobRegistry(queue=queue)
    job = queue.fetch_job(f"delivery-{delivery.pk}")
    registry.schedule(job, timezone.now() - timedelta(minutes=5))
    Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    # when
    requeued = deliveries_requeue_orphans(older_than_seconds=5)
    smtp_server.refuse = False
    run_worker()
    # then
    assert requeued == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1


def test_a_retry_marked_scheduled_but_in_no_registry_is_replaced_and_the_sweep_goes_on(
        client, make_product, make_unpaid_order, run_worker, smtp_server, settings,
        django_capture_on_commit_callbacks):
    # given: two failed sends; Redis went away between rq's writes, so the
    # first retry's job says SCHEDULED while the scheduled registry lost it
    # (rq raises NoSuchJobError when asked when it is due)
    from delivery.models import Channel
    from delivery.services import deliveries_requeue_orphans
    from tests.conftest import NOTIFY_URL, sandbox_notice

    settings.SWEEP_ORPHAN_AFTER_SECONDS = 5
    orders = [make_unpaid_order(product=make_product(keys=1)) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        for order in orders:
            client.post(NOTIFY_URL, sandbox_notice(order))
    smtp_server.refuse = True
    run_worker()
    deliveries = [Delivery.objects.get(order=order, channel=Channel.EMAIL) for order in orders]
    queue = django_rq.get_queue("delivery")
    registry = ScheduledJobRegistry(queue=queue)
    lost = queue.fetch_job(f"delivery-{deliveries[0].pk}")
    assert lost.get_status() == JobStatus.SCHEDULED
    registry.remove(lost)
    registry.schedule(queue.fetch_job(f"delivery-{deliveries[1].pk}"), timezone.now() - timedelta(minutes=5))
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        created_at=timezone.now() - timedelta(minutes=10))
    # when
    requeued = deliveries_requeue_orphans(older_than_seconds=5)
    smtp_server.refuse = False
    run_worker()
    # then: both replaced (the first did not stop the sweep), both sent once
    assert requeued == [d.pk for d in deliveries]
    assert [Delivery.objects.get(pk=d.pk).status for d in deliveries] == [DeliveryStatus.SENT] * 2
    assert len(smtp_server.messages) == 2


def test_sweeper_settles_an_order_whose_worker_died_after_the_send(client, make_product, make_unpaid_order,
                                                                    django_capture_on_commit_callbacks):
    # given: every delivery SENT, but the order still FULFILLING (the worker
    # died between recording the send and settling the order)
    from django.utils import timezone

    from delivery.models import Delivery, DeliveryStatus
    from shop.models import OrderEventType, OrderStatus
    from shop.ops.sweep import sweep_run
    from tests.conftest import NOTIFY_URL, sandbox_notice

    order = make_unpaid_order(product=make_product(keys=1))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(NOTIFY_URL, sandbox_notice(order))
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    # when
    report = sweep_run()
    # then
    order.refresh_from_db()
    assert (report.settled, order.status) == (1, OrderStatus.DELIVERED)
    assert order.events.filter(type=OrderEventType.DELIVERED).count() == 1
    assert sweep_run().settled == 0



def test_sweep_leaves_a_delivery_whose_batch_job_is_still_queued_alone(paid_order):
    # given: a backlog: the batch job enqueued at payment still waits in the queue after the grace period
    _age(paid_order, minutes=5)
    batch_job_id = email_of(paid_order).batch_job_id
    # when
    out = _sweep()
    # then
    assert out.startswith("re-enqueued 0 deliveries")
    assert django_rq.get_queue("delivery").job_ids == [batch_job_id]
    assert OwnerAlert.objects.count() == 0


def test_sweep_rescues_a_delivery_whose_batch_job_a_killed_worker_had_taken(paid_order, run_worker, smtp_server):
    # given: a worker moved the batch job out of the queue (rq's intermediate list) and
    # was SIGKILLed before it started it: the job still says QUEUED, but no worker will run it
    queue = django_rq.get_queue("delivery")
    batch_job_id = email_of(paid_order).batch_job_id
    queue.connection.lmove(queue.key, IntermediateQueue.get_intermediate_queue_key(queue.key), "LEFT", "RIGHT")
    assert queue.fetch_job(batch_job_id).get_status() == JobStatus.QUEUED
    _age(paid_order, minutes=5)
    # when
    out = _sweep()
    run_worker()
    # then: re-enqueued on its own job and sent once
    assert out.startswith("re-enqueued 1 deliveries")
    assert email_of(paid_order).status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1


def test_sweep_rescues_a_delivery_whose_batch_job_failed(paid_order, run_worker, smtp_server):
    # given: the batch job failed as a whole (its worker lost the database) and left the delivery PENDING
    queue = django_rq.get_queue("delivery")
    batch_job = queue.fetch_job(email_of(paid_order).batch_job_id)
    queue.remove(batch_job)
    batch_job.set_status(JobStatus.FAILED)
    _age(paid_order, minutes=5)
    # when
    out = _sweep()
    run_worker()
    # then: re-enqueued on its own job and sent
    assert out.startswith("re-enqueued 1 deliveries")
    assert email_of(paid_order).status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1


def test_a_queued_batch_job_counts_as_live_until_redis_loses_it(paid_order, redis_clean):
    # given
    delivery_id = email_of(paid_order).pk
    # when
    live = deliveries_with_live_job(delivery_ids=[delivery_id])
    redis_clean.flushdb()
    lost = deliveries_with_live_job(delivery_ids=[delivery_id])
    # then
    assert (live, lost) == ({delivery_id}, set())


def test_the_scheduled_sweep_applies_a_payment_notice_whose_wake_up_was_lost(client, make_product, make_unpaid_order,
                                                                           settings, monkeypatch, redis_clean):
    # given: a stored notice, overdue, whose wake-up job vanished with Redis's data
    from delivery.jobs import sweep_job
    from payments.models import PaymentEvent
    from payments.services.inbox import APPLY_QUEUE
    from tests.conftest import NOTIFY_URL, sandbox_notice

    queues = django_rq.settings.QUEUES
    monkeypatch.setitem(queues, APPLY_QUEUE, {**queues[APPLY_QUEUE], "ASYNC": True})
    settings.PAYMENTS_APPLY_OVERDUE_SECONDS = 30
    order = make_unpaid_order(product=make_product(keys=1))
    client.post(NOTIFY_URL, sandbox_notice(order))
    redis_clean.flushdb()
    PaymentEvent.objects.update(received_at=timezone.now() - timedelta(seconds=31))
    order.refresh_from_db()
    before = order.status
    # when: the periodic job runs (the same pass as manage.py sweep)
    result = sweep_job()
    # then
    order.refresh_from_db()
    assert (before, order.status) == (OrderStatus.PENDING_PAYMENT, OrderStatus.FULFILLING)
    assert result == {"ran": True, "applied": 1, "requeued": 0, "expired": 0, "filled": 0, "stuck": 0,
                      "lost_lease": False, "failed": []}


def test_a_delivery_whose_lost_job_cannot_be_replaced_holds_up_neither_the_others_nor_the_other_steps(
        pay, make_product, make_unpaid_order, run_worker, smtp_server, redis_clean, monkeypatch):
    # given: two paid orders whose send jobs Redis lost, an unpaid order past its hold, and the
    # first delivery's job failing to be replaced in a way nobody foresaw
    from delivery.services import orphans

    product = make_product(keys=3)
    first, second = (pay(make_unpaid_order(product=product, email=f"{who}@example.com")) for who in ("ann", "bob"))
    redis_clean.flushdb()
    _age(first, minutes=5)
    _age(second, minutes=5)
    lapsed = make_unpaid_order(product=product, email="cat@example.com")
    Order.objects.filter(pk=lapsed.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))
    broken = email_of(first).pk
    enqueue = orphans.delivery_enqueue

    def enqueue_or_fail(*, delivery_id):
        if delivery_id == broken:
            raise RuntimeError("rq's records of this job are unreadable")
        return enqueue(delivery_id=delivery_id)

    monkeypatch.setattr(orphans, "delivery_enqueue", enqueue_or_fail)
    out, err = StringIO(), StringIO()
    # when
    with pytest.raises(CommandError, match="1 sweep step\\(s\\) failed; the others ran"):
        call_command("sweep", stdout=out, stderr=err)
    run_worker()
    # then: the other delivery went out, and the later steps ran
    assert (email_of(second).status, email_of(first).status) == (DeliveryStatus.SENT, DeliveryStatus.PENDING)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["bob@example.com"]]
    lapsed.refresh_from_db()
    assert lapsed.status == OrderStatus.EXPIRED
    failure = (f"requeued: OrphansNotReplaced: re-enqueued 1; the lost jobs of deliveries {broken} could not be "
               "replaced (see the log)")
    assert err.getvalue().strip() == f"sweep failed in step {failure}"
    assert "expired 1 unpaid orders" in out.getvalue()
    assert SweepRun.objects.get().result["failed"] == [failure]
    alert = OwnerAlert.objects.get(dedupe_key="sweeper:step-failed")
    assert alert.subject == "The sweeper could not do 1 of its steps"
    assert failure in alert.body
