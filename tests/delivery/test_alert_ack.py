"""Owner alerts are acknowledged (who, when); a recurrence after that is a new alert;
an alert with nowhere to go is not marked sent."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from delivery.alerts import owner_alert_raise, owner_alert_send, owner_alerts_acknowledge
from delivery.models import AlertKind, OwnerAlert

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:delivery_owneralert_changelist")


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user(username="owner", password="x", is_staff=True)


@pytest.fixture
def no_recipients(settings):
    settings.OWNER_ALERT_EMAILS = []
    settings.OWNER_ALERT_WEBHOOK_URL = ""
    settings.TELEGRAM_BOT_TOKEN = ""
    settings.TELEGRAM_CHAT_ID = ""


def test_acknowledge_records_who_and_when_and_only_once(owner, admin_user):
    # given
    first = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:1", subject="Dispute 1")
    second = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:2", subject="Dispute 2")
    # when
    acknowledged = owner_alerts_acknowledge(alert_ids=[first.pk, second.pk], user=owner)
    again = owner_alerts_acknowledge(alert_ids=[first.pk], user=admin_user)
    # then
    assert (acknowledged, again) == (2, 0)
    first.refresh_from_db()
    assert first.acknowledged_by == owner
    assert first.acknowledged_at is not None
    assert set(OwnerAlert.objects.values_list("acknowledged_by", flat=True)) == {owner.pk}


def test_an_acknowledged_incident_that_recurs_is_a_new_alert(owner, django_capture_on_commit_callbacks):
    # given
    with django_capture_on_commit_callbacks() as enqueued:
        first = owner_alert_raise(kind=AlertKind.SWEEPER, dedupe_key="sweeper:x", subject="stuck")
        owner_alerts_acknowledge(alert_ids=[first.pk], user=owner)
        # when
        again = owner_alert_raise(kind=AlertKind.SWEEPER, dedupe_key="sweeper:x", subject="stuck")
        counted = owner_alert_raise(kind=AlertKind.SWEEPER, dedupe_key="sweeper:x", subject="stuck")
    # then: a new, unacknowledged row (sent again); the acknowledged one keeps what the owner saw
    assert again.pk != first.pk
    assert counted.pk == again.pk
    assert list(OwnerAlert.objects.order_by("id").values_list("occurrences", "acknowledged_by")) == [
        (1, owner.pk), (2, None),
    ]
    assert len(enqueued) == 2


def test_admin_acknowledge_action_filter_and_columns(admin_client, admin_user):
    # given
    alert = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:1", subject="Dispute 1")
    other = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:2", subject="Dispute 2")
    # when
    response = admin_client.post(CHANGELIST, {"action": "acknowledge", "_selected_action": [alert.pk]}, follow=True)
    # then
    assert "1 alert(s) acknowledged." in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin_user
    open_page = admin_client.get(CHANGELIST, {"acknowledged": "no"}).content.decode()
    done_page = admin_client.get(CHANGELIST, {"acknowledged": "yes"}).content.decode()
    assert "Dispute 2" in open_page and "Dispute 1" not in open_page
    assert "Dispute 1" in done_page and "Dispute 2" not in done_page
    assert f'<td class="field-acknowledged_by nowrap">{admin_user.username}</td>' in done_page
    assert '<th scope="col" class="sortable column-acknowledged_at">' in done_page
    assert '<td class="field-acknowledged_at nowrap">' in done_page
    assert OwnerAlert.objects.get(pk=other.pk).acknowledged_at is None


def test_admin_change_page_acknowledges_one_alert(admin_client, admin_user):
    # given
    alert = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:1", subject="Dispute 1")
    change = reverse("admin:delivery_owneralert_change", args=[alert.pk])
    acknowledge = reverse("admin:delivery_owneralert_acknowledge", args=[alert.pk])
    # when
    before = admin_client.get(change).content.decode()
    refused = admin_client.get(acknowledge)
    response = admin_client.post(acknowledge, follow=True)
    # then
    assert f'action="{acknowledge}"' in before
    assert refused.status_code == 405
    assert response.redirect_chain == [(change, 302)]
    page = response.content.decode()
    assert "Alert acknowledged." in page
    assert f'action="{acknowledge}"' not in page
    assert f"Acknowledged by {admin_user.username}" in page
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin_user


def test_an_alert_with_no_recipients_is_not_marked_sent(no_recipients, admin_client):
    # given
    alert = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:1", subject="Dispute 1")
    # when
    configured = owner_alert_send(alert.pk)
    # then
    alert.refresh_from_db()
    assert configured is False
    assert (alert.sent_at, alert.sent_channels) == (None, [])
    assert mail.outbox == []
    assert "no recipients configured" in admin_client.get(CHANGELIST).content.decode()


def test_an_alert_with_a_recipient_is_marked_sent(no_recipients, settings):
    # given
    settings.OWNER_ALERT_EMAILS = ["owner@example.com"]
    alert = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:1", subject="Dispute 1")
    # when
    configured = owner_alert_send(alert.pk)
    # then
    alert.refresh_from_db()
    assert configured is True
    assert alert.sent_at is not None
    assert alert.sent_channels == ["email"]
