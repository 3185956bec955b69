"""Delivery admin: status, attempts, last error; resend and mark-failed actions; RQ dashboard links."""

import django_rq
import pytest
from django.urls import reverse

from delivery.models import AlertKind, DeliveryStatus, OwnerAlert
from shop.models import OrderEventType
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:delivery_delivery_changelist")


def test_changelist_shows_status_attempts_last_error_and_links_to_the_rq_dashboard(
    admin_client, paid_order, run_worker, smtp_server
):
    # given: a failed first attempt
    smtp_server.refuse = True
    run_worker()
    delivery = email_of(paid_order)
    # when
    page = admin_client.get(CHANGELIST).content.decode()
    # then
    assert '<a href="/admin/django-rq/" class="rq-dashboard">' in page
    assert f'<a href="/admin/django-rq/queues/1/{delivery.job_id}/">{delivery.job_id}</a>' in page
    assert '<td class="field-attempts">1</td>' in page
    assert "SMTPDataError: (451, b&#x27;Requested action aborted: try again later&#x27;)" in page


def test_change_page_lists_every_attempt(admin_client, paid_order, run_worker, smtp_server):
    # given
    smtp_server.refuse = True
    run_worker()
    delivery = email_of(paid_order)
    # when
    page = admin_client.get(reverse("admin:delivery_delivery_change", args=[delivery.pk])).content.decode()
    # then
    assert "Failed, will retry" in page
    assert "GIFT-KEY-00000" not in page


def test_resend_action_queues_the_same_keys_again(admin_client, paid_order, run_worker, smtp_server,
                                                   django_capture_on_commit_callbacks):
    # given
    run_worker()
    delivery = email_of(paid_order)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGELIST, {"action": "resend", "_selected_action": [delivery.pk]}, follow=True)
    run_worker()
    # then
    assert "1 deliveries queued to be sent again." in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.resends) == (DeliveryStatus.SENT, 1)
    assert len(smtp_server.messages) == 2
    event = paid_order.events.get(type=OrderEventType.RESEND_REQUESTED)
    assert (event.actor, event.data) == ("staff:admin", {"channels": ["EMAIL"]})


def test_mark_failed_action_dead_letters_a_pending_delivery(admin_client, paid_order, run_worker, smtp_server):
    # given: a delivery retrying against a refusing server
    smtp_server.refuse = True
    run_worker()
    delivery = email_of(paid_order)
    # when
    response = admin_client.post(CHANGELIST, {"action": "mark_failed", "_selected_action": [delivery.pk]}, follow=True)
    # then
    assert "1 deliveries marked failed." in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "marked failed by staff:admin")
    assert paid_order.events.get(type=OrderEventType.DELIVERY_FAILED).data == {
        "channel": "EMAIL", "attempts": 1, "reason": "marked failed by staff:admin",
    }
    assert OwnerAlert.objects.get().kind == AlertKind.DEAD_LETTER
    # and the scheduled retry, when it runs, sends nothing
    smtp_server.refuse = False
    queue = django_rq.get_queue("delivery")
    queue.enqueue_job(queue.fetch_job(delivery.job_id))
    run_worker()
    assert smtp_server.messages == []


def test_mark_failed_leaves_sent_deliveries_alone(admin_client, paid_order, run_worker, smtp_server):
    # given
    run_worker()
    delivery = email_of(paid_order)
    # when
    response = admin_client.post(CHANGELIST, {"action": "mark_failed", "_selected_action": [delivery.pk]}, follow=True)
    # then
    assert "0 deliveries marked failed." in response.content.decode()
    assert email_of(paid_order).status == DeliveryStatus.SENT
    assert OwnerAlert.objects.count() == 0
