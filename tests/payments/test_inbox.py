"""The notice inbox: the notify endpoint stores and answers; the applier job
pays the orders in batches; the sweeper applies what no job woke up for.

The test settings run the payments queue synchronously; these tests switch it
back to a real queue, drained by a real (in-process) worker."""

from datetime import timedelta

import django_rq
import pytest
from django.core.management import call_command
from django.utils import timezone

from delivery.models import AlertKind, OwnerAlert
from inventory.models import CardKey
from payments.models import PaymentEvent, PaymentEventOutcome
from payments.services import payment_notices_apply, payment_notices_drain
from payments.services.inbox import APPLY_FLAG, APPLY_QUEUE
from shop.models import OrderStatus
from tests.conftest import NOTIFY_URL, free_port, sandbox_notice

pytestmark = pytest.mark.django_db


def _statuses(orders) -> list[str]:
    for order in orders:
        order.refresh_from_db()
    return [order.status for order in orders]


def test_the_endpoint_answers_once_stored_and_a_burst_wakes_one_applier(
    client, queued, make_product, make_unpaid_order, run_worker
):
    # given
    product = make_product(keys=5)
    orders = [make_unpaid_order(product=product) for _ in range(3)]
    # when: the gateway notifies three orders
    replies = [client.post(NOTIFY_URL, sandbox_notice(order)).content for order in orders]
    # then: all acknowledged, stored, not yet applied; one job for the burst
    assert replies == [b"success"] * 3
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.RECEIVED] * 3
    assert _statuses(orders) == [OrderStatus.PENDING_PAYMENT] * 3
    assert queued.count == 1
    # when: a worker runs the applier
    run_worker()
    # then: every order is paid and its keys handed over, each notice applied once
    assert _statuses(orders) == [OrderStatus.FULFILLING] * 3
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED] * 3
    assert not queued.connection.exists(APPLY_FLAG)


def test_a_notice_after_the_applier_started_wakes_another(client, queued, make_product, make_unpaid_order,
                                                          run_worker):
    # given: the applier has run and cleared its wake-up flag
    product = make_product(keys=5)
    first, second = make_unpaid_order(product=product), make_unpaid_order(product=product)
    client.post(NOTIFY_URL, sandbox_notice(first))
    run_worker()
    # when
    client.post(NOTIFY_URL, sandbox_notice(second))
    # then
    assert queued.count == 1
    run_worker()
    assert _statuses([first, second]) == [OrderStatus.FULFILLING] * 2


def test_an_applier_out_of_budget_hands_over_to_a_successor(client, queued, make_product, make_unpaid_order,
                                                            settings):
    # given: five stored notices, batches of two, no time budget to speak of
    settings.PAYMENTS_APPLY_BATCH = 2
    settings.PAYMENTS_APPLY_BUDGET_MS = 0
    product = make_product(keys=5)
    orders = [make_unpaid_order(product=product) for _ in range(5)]
    for order in orders:
        client.post(NOTIFY_URL, sandbox_notice(order))
    queued.empty()
    # when
    taken = payment_notices_drain()
    # then: one batch, then the rest is left to a successor job (the worker
    # looks at the delivery queue in between)
    assert taken == 2
    assert _statuses(orders) == [OrderStatus.FULFILLING] * 2 + [OrderStatus.PENDING_PAYMENT] * 3
    assert [job.func_name for job in queued.jobs] == ["payments.jobs.payment_notices_drain_job"]


def test_an_applier_that_caught_up_stops(client, queued, make_product, make_unpaid_order, settings, monkeypatch):
    # given: three stored notices, batches of two
    settings.PAYMENTS_APPLY_BATCH = 2
    product = make_product(keys=5)
    orders = [make_unpaid_order(product=product) for _ in range(3)]
    for order in orders:
        client.post(NOTIFY_URL, sandbox_notice(order))
    from payments.services import inbox

    batches = []
    real = inbox.payment_notices_apply
    monkeypatch.setattr(inbox, "payment_notices_apply", lambda **kw: batches.append(real(**kw)) or batches[-1])
    # when
    taken = payment_notices_drain()
    # then: a full batch, then a short one, and no third look for more
    assert (taken, batches) == (3, [2, 1])
    assert _statuses(orders) == [OrderStatus.FULFILLING] * 3


def test_a_duplicate_of_a_stored_notice_is_acknowledged_and_applied_once(client, queued, make_product,
                                                                         make_unpaid_order, run_worker):
    # given
    order = make_unpaid_order(product=make_product(keys=5))
    notice = sandbox_notice(order)
    # when: the gateway repeats the notice before and after it was applied
    replies = [client.post(NOTIFY_URL, notice).content, client.post(NOTIFY_URL, notice).content]
    run_worker()
    replies.append(client.post(NOTIFY_URL, notice).content)
    run_worker()
    # then
    assert replies == [b"success"] * 3
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.ACCEPTED
    assert CardKey.objects.filter(order_line__order=order).count() == 1


def test_with_redis_down_the_request_applies_its_own_notice(client, queued, monkeypatch, make_product,
                                                            make_unpaid_order):
    # given: the queue's Redis does not answer
    queues = django_rq.settings.QUEUES
    monkeypatch.setitem(queues, APPLY_QUEUE, {**queues[APPLY_QUEUE], "URL": f"redis://127.0.0.1:{free_port()}/0"})
    order = make_unpaid_order(product=make_product(keys=5))
    # when
    response = client.post(NOTIFY_URL, sandbox_notice(order))
    # then: nothing waits for a job that cannot be queued
    assert response.content == b"success"
    assert _statuses([order]) == [OrderStatus.FULFILLING]
    assert PaymentEvent.objects.get().outcome == PaymentEventOutcome.ACCEPTED


def test_the_sweeper_applies_a_notice_whose_wake_up_was_lost(client, queued, make_product, make_unpaid_order,
                                                             settings):
    # given: a stored notice whose job vanished with Redis's data
    order = make_unpaid_order(product=make_product(keys=5))
    client.post(NOTIFY_URL, sandbox_notice(order))
    queued.connection.flushdb()
    settings.PAYMENTS_APPLY_OVERDUE_SECONDS = 30
    # when: the sweeper runs before the notice is overdue, then after
    call_command("sweep")
    before = _statuses([order])
    PaymentEvent.objects.update(received_at=timezone.now() - timedelta(seconds=31))
    call_command("sweep")
    # then
    assert before == [OrderStatus.PENDING_PAYMENT]
    assert _statuses([order]) == [OrderStatus.FULFILLING]


def test_one_failing_notice_does_not_hold_up_its_batch(client, queued, monkeypatch, make_product,
                                                       make_unpaid_order, settings):
    # given: three stored notices; applying the second one fails every time
    settings.PAYMENTS_APPLY_ALERT_AFTER = 2
    product = make_product(keys=5)
    orders = [make_unpaid_order(product=product) for _ in range(3)]
    for order in orders:
        client.post(NOTIFY_URL, sandbox_notice(order))
    from riskctl.services import assess as risk

    real = risk._assess_many

    def flaky(*, subjects, **kwargs):  # the payment-time risk check of the second order breaks
        if any(subject.order_id == orders[1].pk for subject in subjects):
            raise RuntimeError("boom")
        return real(subjects=subjects, **kwargs)

    monkeypatch.setattr(risk, "_assess_many", flaky)
    # when: one batch, then the retry when it is due
    taken = payment_notices_apply()
    PaymentEvent.objects.update(apply_after=timezone.now())
    payment_notices_apply()
    # then: the others are paid; the bad one is kept, rolled back, retried, and alerted once
    assert taken == 3
    assert _statuses(orders) == [OrderStatus.FULFILLING, OrderStatus.PENDING_PAYMENT, OrderStatus.FULFILLING]
    bad = PaymentEvent.objects.get(reference=orders[1].order_no)
    assert (bad.outcome, bad.apply_attempts, bad.apply_error) == (PaymentEventOutcome.RECEIVED, 2, "RuntimeError: boom")
    assert OwnerAlert.objects.get().kind == AlertKind.PAYMENT_ODD
    # when: the cause is fixed
    monkeypatch.setattr(risk, "_assess_many", real)
    PaymentEvent.objects.update(apply_after=timezone.now())
    payment_notices_apply()
    # then
    assert _statuses(orders)[1] == OrderStatus.FULFILLING


def test_a_notice_not_yet_due_for_its_retry_waits(client, queued, make_product, make_unpaid_order):
    # given: a notice that failed and waits for its back-off
    order = make_unpaid_order(product=make_product(keys=5))
    client.post(NOTIFY_URL, sandbox_notice(order))
    PaymentEvent.objects.update(apply_attempts=1, apply_after=timezone.now() + timedelta(minutes=5))
    # when
    taken = payment_notices_apply()
    # then
    assert taken == 0
    assert _statuses([order]) == [OrderStatus.PENDING_PAYMENT]


def test_one_provider_transaction_reported_for_two_payments_pays_only_the_first(make_product, make_unpaid_order):
    # given: two orders; the provider reports the same transaction for both
    from payments.providers.base import CallbackNotice
    from payments.services import payment_callback_handle

    product = make_product(keys=5)
    first, second = make_unpaid_order(product=product), make_unpaid_order(product=product)

    def notice(order, event_id):
        return CallbackNotice(external_id=event_id, reference=order.order_no, amount=order.amount,
                              currency=order.currency, succeeded=True, transaction_id="pi_shared")

    # when
    outcomes = [payment_callback_handle(provider_id="sandbox", notice=notice(first, "evt_1")),
                payment_callback_handle(provider_id="sandbox", notice=notice(second, "evt_2"))]
    # then
    assert [(o.accepted, o.code) for o in outcomes] == [(True, ""), (False, "TRANSACTION_REUSED")]
    assert _statuses([first, second]) == [OrderStatus.FULFILLING, OrderStatus.PENDING_PAYMENT]
