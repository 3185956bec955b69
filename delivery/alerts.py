"""Owner alerts: one message per incident, not one per occurrence.

``owner_alert_raise`` may be called inside any transaction. Within
``OWNER_ALERT_DEDUPE_SECONDS`` the same ``dedupe_key`` only counts another
occurrence on the open alert; a new alert is emailed to ``OWNER_ALERT_EMAILS``
by a job enqueued after commit (nothing is sent for a rolled-back incident),
and to the signed ``OWNER_ALERT_WEBHOOK_URL`` and a Telegram chat when set.
At most ``OWNER_ALERT_RATE_PER_HOUR`` alerts of one kind are sent an hour;
the rest are kept (``suppressed``) in the admin. With no channel configured
nothing is sent and ``sent_at`` stays empty (the admin says so).
The owner acknowledges alerts in the admin (who and when are kept).
Key material never goes into an alert.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from datetime import timedelta

import django_rq
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rq import Retry

from delivery.models import OwnerAlert
from delivery.sms.webhook import webhook_sign

ALERT_TIMEOUT_SECONDS = 10

logger = logging.getLogger(__name__)


def owner_alert_raise(*, kind: str, dedupe_key: str, subject: str, body: str = "") -> OwnerAlert:
    """Record an incident, or one more occurrence of the open one.

    Only an *unacknowledged* alert absorbs occurrences. Once the owner has
    acknowledged it, the same ``dedupe_key`` opens a new row, sent again
    (subject to the hourly limit): the owner said "seen, dealt with", so a
    recurrence is news. Clearing the acknowledgement instead would erase who
    saw it and when, and send nothing (the old row is already sent)."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Serialise raises of the same incident across processes.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"owner-alert:{dedupe_key}"])
        window_start = now - timedelta(seconds=settings.OWNER_ALERT_DEDUPE_SECONDS)
        open_alert = (
            OwnerAlert.objects.filter(dedupe_key=dedupe_key, created_at__gte=window_start, acknowledged_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        # Conditional: an acknowledgement committed meanwhile makes this a new alert.
        if open_alert is not None and OwnerAlert.objects.filter(pk=open_alert.pk, acknowledged_at__isnull=True).update(
            occurrences=F("occurrences") + 1, last_seen_at=now
        ):
            open_alert.refresh_from_db()
            return open_alert
        with connection.cursor() as cursor:
            # Serialise the rate count of one kind too.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"owner-alert-kind:{kind}"])
        sent_this_hour = OwnerAlert.objects.filter(
            kind=kind, suppressed=False, created_at__gte=now - timedelta(hours=1)
        ).count()
        suppressed = sent_this_hour >= settings.OWNER_ALERT_RATE_PER_HOUR
        alert = OwnerAlert.objects.create(
            kind=kind, dedupe_key=dedupe_key, subject=subject[:200], body=body, suppressed=suppressed
        )
        logger.warning("owner alert %s%s: %s", kind, " (over the hourly limit, not sent)" if suppressed else "", subject)
        if not suppressed:
            transaction.on_commit(lambda alert_id=alert.pk: _enqueue_send(alert_id=alert_id), robust=True)
        return alert


def owner_alerts_acknowledge(*, alert_ids: list[int], user: AbstractBaseUser) -> int:
    """The owner has seen these alerts: record who and when on the ones not
    yet acknowledged (an earlier acknowledgement is kept). Returns how many
    were acknowledged now."""
    return OwnerAlert.objects.filter(pk__in=alert_ids, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user
    )


def owner_alert_channels() -> dict[str, bool]:
    """Which notification channels are configured (email, webhook, Telegram)."""
    return {
        "email": bool(settings.OWNER_ALERT_EMAILS),
        "webhook": bool(settings.OWNER_ALERT_WEBHOOK_URL),
        "telegram": bool(settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID),
    }


def _enqueue_send(*, alert_id: int) -> None:
    django_rq.get_queue("default").enqueue(
        "delivery.alerts.owner_alert_send", alert_id, job_id=f"owner-alert-{alert_id}",
        retry=Retry(max=5, interval=[10, 60, 300, 900, 3600]),
    )


class AlertChannelFailed(Exception):
    code = "ALERT_CHANNEL_FAILED"


def owner_alert_send(alert_id: int) -> bool:
    """RQ job: tell the owners once, on every configured channel (email, the
    signed webhook, Telegram). A channel that fails is retried by RQ; the ones
    already reached are skipped. Returns whether any channel is configured;
    with none, ``sent_at`` stays empty: nobody was told."""
    alert = OwnerAlert.objects.get(pk=alert_id)
    if alert.sent_at is not None or alert.suppressed:
        return False
    channels = owner_alert_channels()
    if not any(channels.values()):
        logger.warning("owner alert %s not sent: no recipients configured", alert_id)
        return False
    link = f"{settings.SITE_URL}/admin/delivery/owneralert/{alert.pk}/change/"
    senders = {"email": _alert_email, "webhook": _alert_webhook, "telegram": _alert_telegram}
    failed = []
    for channel, configured in channels.items():
        if not configured or channel in alert.sent_channels:
            continue
        try:
            senders[channel](alert=alert, link=link)
        except (OSError, ValueError) as exc:
            # Only the kind of error: a URL may carry the bot token.
            failed.append(f"{channel}: {exc.code if hasattr(exc, 'code') else type(exc).__name__}")
            continue
        alert.sent_channels = [*alert.sent_channels, channel]
        OwnerAlert.objects.filter(pk=alert_id).update(sent_channels=alert.sent_channels)
    if failed:
        raise AlertChannelFailed(f"alert {alert_id}: {', '.join(failed)}")
    OwnerAlert.objects.filter(pk=alert_id, sent_at__isnull=True).update(sent_at=timezone.now())
    return True


def _alert_email(*, alert: OwnerAlert, link: str) -> None:
    send_mail(
        subject=f"[{settings.SHOP_NAME}] {alert.subject}",
        message=f"{alert.body}\n\n{link}",
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=settings.OWNER_ALERT_EMAILS,
    )


def _alert_webhook(*, alert: OwnerAlert, link: str) -> None:
    body = json.dumps({
        "id": alert.pk, "kind": alert.kind, "subject": alert.subject, "body": alert.body,
        "occurrences": alert.occurrences, "created_at": alert.created_at.isoformat(), "url": link,
        "shop": settings.SHOP_NAME,
    }, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        settings.OWNER_ALERT_WEBHOOK_URL, data=body, method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Kamidrop-Event": "owner.alert",
            "X-Kamidrop-Timestamp": timestamp,
            "X-Kamidrop-Signature": webhook_sign(
                secret=settings.OWNER_ALERT_WEBHOOK_SECRET, timestamp=timestamp, body=body
            ),
        },
    )
    with urllib.request.urlopen(request, timeout=ALERT_TIMEOUT_SECONDS):
        pass


def _alert_telegram(*, alert: OwnerAlert, link: str) -> None:
    text = f"[{settings.SHOP_NAME}] {alert.subject}\n\n{alert.body}\n\n{link}"[:4000]
    body = json.dumps({"chat_id": settings.TELEGRAM_CHAT_ID, "text": text, "disable_web_page_preview": True}).encode()
    request = urllib.request.Request(
        f"{settings.TELEGRAM_API_BASE}/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=ALERT_TIMEOUT_SECONDS):
        pass
