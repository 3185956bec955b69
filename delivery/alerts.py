"""Owner alerts: one message per incident, not one per occurrence.

``owner_alert_raise`` may be called inside any transaction. Within
``OWNER_ALERT_DEDUPE_SECONDS`` the same ``dedupe_key`` only counts another
occurrence on the open alert; a new alert is emailed to ``OWNER_ALERT_EMAILS``
by a job enqueued after commit (nothing is sent for a rolled-back incident).
Key material never goes into an alert.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rq import Retry

from delivery.models import OwnerAlert

logger = logging.getLogger(__name__)


def owner_alert_raise(*, kind: str, dedupe_key: str, subject: str, body: str = "") -> OwnerAlert:
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Serialise raises of the same incident across processes.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"owner-alert:{dedupe_key}"])
        window_start = now - timedelta(seconds=settings.OWNER_ALERT_DEDUPE_SECONDS)
        open_alert = (
            OwnerAlert.objects.filter(dedupe_key=dedupe_key, created_at__gte=window_start)
            .order_by("-created_at")
            .first()
        )
        if open_alert is not None:
            OwnerAlert.objects.filter(pk=open_alert.pk).update(occurrences=F("occurrences") + 1, last_seen_at=now)
            open_alert.refresh_from_db()
            return open_alert
        alert = OwnerAlert.objects.create(kind=kind, dedupe_key=dedupe_key, subject=subject[:200], body=body)
        logger.warning("owner alert %s: %s", kind, subject)
        transaction.on_commit(lambda alert_id=alert.pk: _enqueue_send(alert_id=alert_id), robust=True)
        return alert


def _enqueue_send(*, alert_id: int) -> None:
    django_rq.get_queue("default").enqueue(
        "delivery.alerts.owner_alert_send", alert_id, job_id=f"owner-alert-{alert_id}",
        retry=Retry(max=5, interval=[10, 60, 300, 900, 3600]),
    )


def owner_alert_send(alert_id: int) -> bool:
    """RQ job: email the alert to the owners once."""
    alert = OwnerAlert.objects.get(pk=alert_id)
    if alert.sent_at is not None:
        return False
    recipients = settings.OWNER_ALERT_EMAILS
    if recipients:
        send_mail(
            subject=f"[{settings.SHOP_NAME}] {alert.subject}",
            message=f"{alert.body}\n\n{settings.SITE_URL}/admin/delivery/owneralert/{alert.pk}/change/",
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    OwnerAlert.objects.filter(pk=alert_id, sent_at__isnull=True).update(sent_at=timezone.now())
    return bool(recipients)
