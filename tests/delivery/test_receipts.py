"""Send receipts: a send whose outcome never reached the database (it went
away mid-batch, or the worker died between sending and recording) is
recorded by the next run from its receipt, never sent to the buyer twice."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from delivery.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus
from delivery.services import delivery_resend, delivery_send
from delivery.services.sending import deliveries_claim, deliveries_transmit
from shop.models import Order
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db


def _sent_but_never_recorded(delivery: Delivery) -> str:
    """What a batch leaves when the database fails after the send: the claim
    and the send (which notes its receipt) happened, the recording did not."""
    sends = deliveries_claim(delivery_ids=[delivery.pk])
    deliveries_transmit(sends=sends)
    # the send lease lapses, as the sweeper finds it
    Delivery.objects.filter(pk=delivery.pk).update(
        sending_started_at=timezone.now() - timedelta(seconds=settings.DELIVERY_SEND_LEASE_SECONDS + 1))
    return sends[0].result


def test_a_send_the_database_never_heard_of_is_recorded_not_made_again(paid_order, smtp_server, redis_clean):
    # given: the email went out, its outcome was lost
    delivery = email_of(paid_order)
    message_id = _sent_but_never_recorded(delivery)
    assert len(smtp_server.messages) == 1 and email_of(paid_order).status == DeliveryStatus.PENDING
    # when: the sweeper's rescue job runs the delivery again
    status = delivery_send(delivery_id=delivery.pk)
    # then: recorded as sent with the first message's id; the buyer has one email
    delivery.refresh_from_db()
    assert (status, delivery.status, delivery.provider_message_id) == (DeliveryStatus.SENT, DeliveryStatus.SENT,
                                                                       message_id)
    assert len(smtp_server.messages) == 1
    assert list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number").values_list("outcome", flat=True)) == [
        AttemptOutcome.STARTED, AttemptOutcome.SENT]


def test_a_resend_the_buyer_asks_for_is_a_new_send(paid_order, smtp_server, redis_clean, run_worker):
    # given: the email was sent and recorded
    delivery = email_of(paid_order)
    delivery_send(delivery_id=delivery.pk)
    # when: the buyer asks for it again
    delivery_resend(delivery_id=delivery.pk, enqueue=False)
    delivery_send(delivery_id=delivery.pk)
    # then: a second email, not suppressed by the first one's receipt
    assert len(smtp_server.messages) == 2
    assert email_of(paid_order).status == DeliveryStatus.SENT


def test_without_redis_the_send_is_made_again_rather_than_lost(paid_order, smtp_server, redis_clean, settings):
    # given: the email went out, its outcome was lost, and its receipt too (Redis flushed)
    delivery = email_of(paid_order)
    _sent_but_never_recorded(delivery)
    redis_clean.flushdb()
    # when
    delivery_send(delivery_id=delivery.pk)
    # then: a duplicate, never a loss
    assert len(smtp_server.messages) == 2 and email_of(paid_order).status == DeliveryStatus.SENT



def test_a_receipt_is_its_orders_only(paid_order, smtp_server, redis_clean):
    # given: a receipt for this delivery's id, left by an order that a database restored from a
    # backup no longer has (its ids come round again within the receipt's day, its order numbers not)
    delivery = email_of(paid_order)
    _sent_but_never_recorded(delivery)
    Order.objects.filter(pk=paid_order.pk).update(order_no="RESTORED-0001")
    # when
    delivery_send(delivery_id=delivery.pk)
    # then: this order's email is sent, not taken for sent
    assert len(smtp_server.messages) == 2 and email_of(paid_order).status == DeliveryStatus.SENT
