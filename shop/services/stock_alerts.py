"""Back in stock: buyers who found a product sold out leave their email and
are emailed once when keys arrive.

The import (``inventory.services.keys_import``) calls ``stock_alerts_enqueue``
after its keys are committed (``STOCK_ADDED_HOOK``); the job
(``shop.jobs.stock_alerts_notify_job``) claims the waiting requests in
batches and mails them outside any transaction. A request is claimed
(``notified_at`` set) before its email is sent, so two jobs never mail one
buyer twice; a send that fails un-claims its request and the job raises, so
RQ tries again on the delivery retry schedule.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass

import django_rq
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from rq import Retry

from shop.models import Product, StockAlertRequest
from shop.selectors import product_stock

logger = logging.getLogger(__name__)

QUEUE = "delivery"
BATCH_SIZE = 50
_UNSUBSCRIBE_SALT = "kamidrop.stock-alert-unsubscribe"


class StockAlertRefused(Exception):
    def __init__(self, *, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StockAlertAsked:
    request: StockAlertRequest
    created: bool  # False: this email already waited for this product (nothing changed)


def stock_alert_request(*, product: Product, email: str, language: str) -> StockAlertAsked:
    """Remember that ``email`` wants to hear when ``product`` is back. Asking
    again while a request waits changes nothing (the database's partial
    unique constraint decides, race-free). Raises StockAlertRefused
    (IN_STOCK) when the product can be bought now."""
    email = (email or "").strip().lower()
    if product_stock(product=product) > 0:
        raise StockAlertRefused(code="IN_STOCK", message="This product is in stock: buy it now.")
    try:
        with transaction.atomic():
            alert = StockAlertRequest.objects.create(product=product, email=email, language=(language or "")[:10])
    except IntegrityError:
        alert = StockAlertRequest.objects.get(product=product, email=email, notified_at__isnull=True,
                                              unsubscribed_at__isnull=True)
        return StockAlertAsked(request=alert, created=False)
    return StockAlertAsked(request=alert, created=True)


def stock_alert_unsubscribe_token(*, alert_id: int) -> str:
    return signing.dumps(alert_id, salt=_UNSUBSCRIBE_SALT)


def stock_alert_for_token(*, token: str) -> StockAlertRequest | None:
    try:
        alert_id = signing.loads(token or "", salt=_UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return StockAlertRequest.objects.select_related("product").filter(pk=alert_id).first()


def stock_alert_unsubscribe(*, token: str) -> StockAlertRequest | None:
    """One click: the request behind ``token`` is cancelled (no email after
    this one, if any). Returns it, or None for a token that is not ours."""
    alert = stock_alert_for_token(token=token)
    if alert is None:
        return None
    StockAlertRequest.objects.filter(pk=alert.pk, unsubscribed_at__isnull=True).update(unsubscribed_at=timezone.now())
    alert.refresh_from_db()
    return alert


def stock_alerts_enqueue(*, product_id: int) -> None:
    """``STOCK_ADDED_HOOK``: keys of the product were added (after commit).
    One job per product under a fixed id (a second import while it waits
    changes nothing), retried on the delivery schedule. A network call:
    never inside a transaction."""
    if not StockAlertRequest.objects.filter(product_id=product_id, notified_at__isnull=True,
                                            unsubscribed_at__isnull=True).exists():
        return  # nobody waits: most imports
    schedule = list(settings.DELIVERY_RETRY_SCHEDULE)
    django_rq.get_queue(QUEUE).enqueue(
        "shop.jobs.stock_alerts_notify_job", product_id, job_id=f"stock-alerts-{product_id}",
        retry=Retry(max=len(schedule), interval=schedule) if schedule else None,
    )


def _claim(*, product_id: int, size: int) -> list[StockAlertRequest]:
    """Claim (mark notified) the next waiting requests of the product, skipping
    rows another job holds. A short transaction of its own."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            StockAlertRequest.objects.select_for_update(skip_locked=True)
            .filter(product_id=product_id, notified_at__isnull=True, unsubscribed_at__isnull=True)
            .order_by("id").values_list("pk", flat=True)[:size]
        )
        StockAlertRequest.objects.filter(pk__in=ids).update(notified_at=now)
    return list(StockAlertRequest.objects.filter(pk__in=ids).order_by("id"))


def _message(alert: StockAlertRequest, product: Product) -> EmailMultiAlternatives:
    unsubscribe = settings.SITE_URL + reverse(
        "shop:stock-alert-unsubscribe", args=[stock_alert_unsubscribe_token(alert_id=alert.pk)])
    with translation.override(alert.language or settings.LANGUAGE_CODE):
        context = {
            "product": product, "product_name": product.display_name, "shop_name": settings.SHOP_NAME,
            "product_url": settings.SITE_URL + reverse("shop:product", args=[product.slug]),
            "unsubscribe_url": unsubscribe, "language": translation.get_language(),
        }
        subject = render_to_string("shop/email_stock_alert_subject.txt", context).strip()
        text = render_to_string("shop/email_stock_alert.txt", context)
        html = render_to_string("shop/email_stock_alert.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [alert.email], headers={
        # One-click unsubscribe in the mail client (RFC 8058): a POST to the same page.
        "List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-generated",
    })
    message.attach_alternative(html, "text/html")
    return message


def stock_alerts_notify(*, product_id: int, batch_size: int = BATCH_SIZE) -> int:
    """Email every buyer waiting for the product, once, in batches over one
    connection each. Does nothing while a buyer still could not buy it (no
    stock left after the orders waiting for keys took theirs, or it is off
    sale): the requests keep waiting for the next import. Returns how many
    were emailed; raises after un-claiming the requests whose email failed
    (RQ retries the job; those already emailed are not emailed again)."""
    product = Product.objects.filter(pk=product_id, active=True).first()
    if product is None or product_stock(product=product) <= 0:
        return 0
    sent = 0
    while alerts := _claim(product_id=product_id, size=batch_size):
        done: set[int] = set()
        try:
            with get_connection() as connection:
                for alert in alerts:
                    try:
                        connection.send_messages([_message(alert, product)])
                    except smtplib.SMTPRecipientsRefused:
                        # The address does not exist: trying again cannot help.
                        logger.warning("back-in-stock email %s refused by the mail server", alert.pk)
                    else:
                        sent += 1
                    done.add(alert.pk)
        except Exception:
            # The server is down or refused for now: these wait for the retry.
            StockAlertRequest.objects.filter(pk__in=[a.pk for a in alerts if a.pk not in done]).update(
                notified_at=None)
            logger.warning("back-in-stock emails for product %s stopped after %d; the job will retry",
                           product_id, sent)
            raise
    return sent
