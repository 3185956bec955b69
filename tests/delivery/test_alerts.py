"""Owner alerts: one email per incident, occurrences counted, nothing sent on rollback."""

import pytest
from django.core import mail
from django.db import transaction

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind, OwnerAlert

pytestmark = pytest.mark.django_db


def test_repeated_incident_is_one_alert_and_one_email(settings, django_capture_on_commit_callbacks, run_worker):
    # given
    settings.OWNER_ALERT_EMAILS = ["owner@example.com"]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            owner_alert_raise(kind=AlertKind.LOW_STOCK, dedupe_key="low-stock:gift", subject="Gift card: 2 keys left")
    run_worker()
    # then
    alert = OwnerAlert.objects.get()
    assert (alert.occurrences, alert.subject) == (5, "Gift card: 2 keys left")
    assert alert.sent_at is not None
    assert [m.subject for m in mail.outbox] == ["[Kamidrop] Gift card: 2 keys left"]
    assert mail.outbox[0].to == ["owner@example.com"]


def test_new_alert_after_the_window(settings, django_capture_on_commit_callbacks):
    # given
    settings.OWNER_ALERT_DEDUPE_SECONDS = 0
    # when
    with django_capture_on_commit_callbacks(execute=True):
        owner_alert_raise(kind=AlertKind.DEAD_LETTER, dedupe_key="k", subject="first")
        owner_alert_raise(kind=AlertKind.DEAD_LETTER, dedupe_key="k", subject="second")
    # then
    assert list(OwnerAlert.objects.order_by("id").values_list("subject", "occurrences")) == [("first", 1), ("second", 1)]


def test_rolled_back_incident_sends_nothing(django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            owner_alert_raise(kind=AlertKind.SWEEPER, dedupe_key="k", subject="x")
            raise RuntimeError("rollback")
    # then
    assert callbacks == []
    assert OwnerAlert.objects.count() == 0
