"""Owner alerts besides email: the signed webhook, Telegram, and the hourly rate limit per kind."""

import hashlib
import hmac
import json

import pytest
from django.core import mail

from delivery.alerts import AlertChannelFailed, owner_alert_raise, owner_alert_send
from delivery.models import AlertKind, OwnerAlert

pytestmark = pytest.mark.django_db

HOOK_SECRET = "owner-hook-secret"
BOT_TOKEN = "123456:test-bot-token"


@pytest.fixture
def channels(settings, http_receiver):
    settings.OWNER_ALERT_EMAILS = ["owner@example.com"]
    settings.OWNER_ALERT_WEBHOOK_URL = f"{http_receiver.url}/alerts"
    settings.OWNER_ALERT_WEBHOOK_SECRET = HOOK_SECRET
    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    settings.TELEGRAM_CHAT_ID = "-1001"
    settings.TELEGRAM_API_BASE = http_receiver.url
    return http_receiver


def test_an_alert_goes_to_email_signed_webhook_and_telegram(channels, django_capture_on_commit_callbacks, run_worker):
    # given
    with django_capture_on_commit_callbacks(execute=True):
        alert = owner_alert_raise(kind=AlertKind.LOW_STOCK, dedupe_key="low:1", subject="Low stock: Gift", body="Import more.")
    # when
    run_worker()
    # then: email
    assert [m.subject for m in mail.outbox] == ["[Kamidrop] Low stock: Gift"]
    # and the webhook, signed over timestamp.body
    hook, telegram = channels.received
    assert hook["path"] == "/alerts"
    timestamp = hook["headers"]["X-Kamidrop-Timestamp"]
    mac = hmac.new(HOOK_SECRET.encode(), timestamp.encode() + b"." + hook["body"], hashlib.sha256).hexdigest()
    assert hook["headers"]["X-Kamidrop-Signature"] == f"sha256={mac}"
    payload = json.loads(hook["body"])
    assert (payload["id"], payload["kind"], payload["subject"]) == (alert.pk, "LOW_STOCK", "Low stock: Gift")
    # and Telegram's sendMessage
    assert telegram["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    message = json.loads(telegram["body"])
    assert message["chat_id"] == "-1001"
    assert message["text"].startswith("[Kamidrop] Low stock: Gift\n\nImport more.")
    alert.refresh_from_db()
    assert alert.sent_at is not None
    assert alert.sent_channels == ["email", "webhook", "telegram"]


def test_a_failing_channel_is_retried_without_repeating_the_others(channels):
    # given: the webhook answers 500 once
    channels.answers = [500]
    alert = owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key="d:1", subject="Dispute")
    # when
    with pytest.raises(AlertChannelFailed) as failed:
        owner_alert_send(alert.pk)
    again = owner_alert_send(alert.pk)
    # then
    assert str(failed.value) == f"alert {alert.pk}: webhook: 500"
    assert again is True
    assert len(mail.outbox) == 1
    assert [r["path"] for r in channels.received] == ["/alerts", f"/bot{BOT_TOKEN}/sendMessage", "/alerts"]
    alert.refresh_from_db()
    assert sorted(alert.sent_channels) == ["email", "telegram", "webhook"]
    assert alert.sent_at is not None


def test_alerts_of_one_kind_over_the_hourly_limit_are_kept_not_sent(settings, django_capture_on_commit_callbacks):
    # given
    settings.OWNER_ALERT_RATE_PER_HOUR = 2
    # when: three incidents of one kind, one of another
    with django_capture_on_commit_callbacks() as enqueued:
        for n in range(3):
            owner_alert_raise(kind=AlertKind.PAYMENT_ODD, dedupe_key=f"odd:{n}", subject=f"odd {n}")
        owner_alert_raise(kind=AlertKind.DEAD_LETTER, dedupe_key="dl", subject="dead letter")
    # then
    assert list(OwnerAlert.objects.order_by("id").values_list("subject", "suppressed")) == [
        ("odd 0", False), ("odd 1", False), ("odd 2", True), ("dead letter", False),
    ]
    assert len(enqueued) == 3
    suppressed = OwnerAlert.objects.get(subject="odd 2")
    assert owner_alert_send(suppressed.pk) is False


def test_a_repeated_incident_is_counted_not_sent_again(django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks() as enqueued:
        first = owner_alert_raise(kind=AlertKind.SWEEPER, dedupe_key="sweeper:x", subject="stuck")
        second = owner_alert_raise(kind=AlertKind.SWEEPER, dedupe_key="sweeper:x", subject="stuck")
    # then
    assert second.pk == first.pk
    assert second.occurrences == 2
    assert len(enqueued) == 1
