""""All my orders": a one-time link, emailed, that signs a browser in to every
order of one email address."""

from __future__ import annotations

from datetime import timedelta

import django_rq
from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from shop.models import Order, SignInLink

SIGNIN_LINK_MINUTES = 30
# Its own salt: a sign-in token is never a lookup-link token, nor the reverse.
_SALT = "kamidrop.signin-link"


class SignInFailed(Exception):
    """One error for a link that is forged, expired or used."""

    code = "SIGNIN_FAILED"


def _email_normalise(email: str) -> str:
    return (email or "").strip().lower()


def signin_link_request(*, email: str, language: str) -> bool:
    """Email a sign-in link to ``email`` when it has orders. Says whether one
    was made, which the interface must NOT tell the requester (the answer is
    the same either way: no probing which emails bought here). The email is
    sent by a job after commit, in ``language``."""
    email = _email_normalise(email)
    if not email or not Order.objects.filter(email__iexact=email).exists():
        return False
    with transaction.atomic():
        link = SignInLink.objects.create(email=email,
                                         expires_at=timezone.now() + timedelta(minutes=SIGNIN_LINK_MINUTES))
        # Robust: with Redis down the buyer still gets the same answer (and can ask again).
        transaction.on_commit(lambda: django_rq.get_queue("default").enqueue(
            "shop.jobs.signin_link_email_job", link.pk, language, job_id=f"signin-link-{link.pk}",
        ), robust=True)
    return True


def signin_link_token(*, link_id: int) -> str:
    return signing.dumps(link_id, salt=_SALT)


def signin_link_email_send(*, link_id: int, language: str) -> None:
    """Send the link (outside any transaction). The token is made here, so it
    never sits in Redis or a log line. Does nothing for a link already used
    or expired."""
    link = SignInLink.objects.filter(pk=link_id, used_at__isnull=True, expires_at__gt=timezone.now()).first()
    if link is None:
        return
    with translation.override(language or settings.LANGUAGE_CODE):
        context = {
            "email": link.email, "minutes": SIGNIN_LINK_MINUTES, "shop_name": settings.SHOP_NAME,
            "url": settings.SITE_URL + reverse("shop:signin-link", args=[signin_link_token(link_id=link.pk)]),
        }
        subject = render_to_string("shop/email_signin_subject.txt", context).strip()
        body = render_to_string("shop/email_signin.txt", context)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [link.email])


def signin_link_consume(*, token: str) -> str:
    """The email of a valid, unexpired, unused link; the link is used up.
    Raises SignInFailed otherwise."""
    try:
        link_id = signing.loads(token or "", salt=_SALT, max_age=SIGNIN_LINK_MINUTES * 60)
    except signing.BadSignature:
        raise SignInFailed() from None
    now = timezone.now()
    if not SignInLink.objects.filter(pk=link_id, used_at__isnull=True, expires_at__gt=now).update(used_at=now):
        raise SignInFailed()
    return SignInLink.objects.values_list("email", flat=True).get(pk=link_id)


def orders_for_emails(*, emails: list[str], limit: int = 100) -> list[Order]:
    """The orders of these emails, newest first, with their lines' products."""
    emails = [_email_normalise(e) for e in emails if e]
    if not emails:
        return []
    match = Q()
    for email in emails:
        match |= Q(email__iexact=email)
    return list(Order.objects.filter(match).prefetch_related("lines__product").order_by("-created_at", "-id")[:limit])
