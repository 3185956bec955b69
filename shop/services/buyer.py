"""The buyer after paying: finding an order again, seeing and reporting its keys."""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from inventory import services as inventory_services
from inventory.models import KeyAuditEvent
from inventory.selectors import keys_for_order
from riskctl.models import RiskEventKind
from riskctl.services import risk_event_for_order
from shop.models import KeyReport, KeyReportStatus, KeyReveal, LookupLink, Order
from shop.project.locks import order_lock
from shop.selectors import order_by_number
from shop.services.events import event_key_reported, events_save
from shop.services.fulfilment import order_key_replace
from shop.services.resend import order_resend

logger = logging.getLogger(__name__)

BUYER = "buyer"
LOOKUP_LINK_MINUTES = 30
_LINK_SALT = "kamidrop.lookup-link"
# Compared against when no order matches, so a miss costs the same hashing time as a hit.
_DUMMY_HASH = None


class LookupFailed(Exception):
    """One error for every way a lookup can fail: it must not tell an unknown
    order from a wrong email or password."""

    code = "LOOKUP_FAILED"
    message = "We could not find an order with these details."


class KeyActionRefused(Exception):
    def __init__(self, *, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = make_password("kamidrop-no-such-order")
    return _DUMMY_HASH


def order_lookup(*, order_no: str, email: str, query_password: str) -> Order:
    """The order whose number, email and query password all match.

    An order placed without a query password cannot be opened this way (only
    by the emailed link): knowing an order number and an email is not a secret.
    """
    order = order_by_number(order_no=(order_no or "").strip())
    encoded = order.query_password_hash if order is not None and order.query_password_hash else _dummy_hash()
    password_ok = check_password(query_password or "", encoded)
    if (
        order is None or not order.query_password_hash or not password_ok
        or order.email.strip().lower() != (email or "").strip().lower()
    ):
        raise LookupFailed()
    return order


def lookup_link_request(*, order_no: str, email: str) -> bool:
    """Email a one-time link to the order page when the order number and email
    match. Says whether a link was made, which the interface must NOT tell the
    requester (the answer is the same either way). Sent by a job after commit."""
    order = order_by_number(order_no=(order_no or "").strip())
    if order is None or order.email.strip().lower() != (email or "").strip().lower():
        return False
    with transaction.atomic():
        link = LookupLink.objects.create(
            order=order, expires_at=timezone.now() + timedelta(minutes=LOOKUP_LINK_MINUTES),
        )
        language = translation.get_language() or settings.LANGUAGE_CODE
        # Robust: with Redis down the buyer still gets the same answer (and can ask again).
        transaction.on_commit(lambda: django_rq.get_queue("default").enqueue(
            lookup_link_email_send, link_id=link.pk, language=language, job_id=f"lookup-link-{link.pk}",
        ), robust=True)
    return True


def lookup_link_token(*, link_id: int) -> str:
    return signing.dumps(link_id, salt=_LINK_SALT)


def lookup_link_email_send(*, link_id: int, language: str) -> None:
    """RQ job: send the lookup link (outside any transaction). The token is
    made here, so it never sits in Redis or a log line. Does nothing for a link
    already used or expired."""
    link = LookupLink.objects.select_related("order").filter(
        pk=link_id, used_at__isnull=True, expires_at__gt=timezone.now()
    ).first()
    if link is None:
        return
    with translation.override(language):
        context = {
            "order": link.order, "minutes": LOOKUP_LINK_MINUTES, "shop_name": getattr(settings, "SHOP_NAME", "Kamidrop"),
            "url": f"{settings.SITE_URL}/lookup/link/{lookup_link_token(link_id=link.pk)}",
        }
        subject = render_to_string("shop/email_lookup_subject.txt", context).strip()
        body = render_to_string("shop/email_lookup.txt", context)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [link.order.email])


def lookup_link_consume(*, token: str) -> Order:
    """The order of a valid, unexpired, unused link; the link is used up."""
    try:
        link_id = signing.loads(token or "", salt=_LINK_SALT, max_age=LOOKUP_LINK_MINUTES * 60)
    except signing.BadSignature:
        raise LookupFailed() from None
    now = timezone.now()
    used = LookupLink.objects.filter(pk=link_id, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not used:
        raise LookupFailed()
    return LookupLink.objects.select_related("order").get(pk=link_id).order


def _delivered_key(*, order: Order, key_id: int):
    key = keys_for_order(order_id=order.pk).filter(pk=key_id).first()
    if key is None or not order.keys_visible:
        raise KeyActionRefused(code="KEY_NOT_FOUND", message="This key is not on this order.")
    return key


def order_key_reveal(*, order_id: int, key_id: int, ip: str | None, user_agent: str):
    """Show one delivered key to the buyer: ``order_keys_reveal`` of one."""
    return order_keys_reveal(order_id=order_id, key_ids=[key_id], ip=ip, user_agent=user_agent)[0]


def order_keys_reveal(*, order_id: int, key_ids: list[int] | None, ip: str | None, user_agent: str) -> list:
    """Show delivered keys of the order to the buyer (all of them when
    ``key_ids`` is None) and keep the evidence of each (when, IP, browser).
    Returns the keys (their ``secret`` is the plaintext). Raises
    KeyActionRefused (KEY_NOT_FOUND) when a key asked for is not a delivered
    key of the order, or the order has none yet: nothing is logged then."""
    with transaction.atomic():
        order = Order.objects.get(pk=order_id)
        keys = keys_for_order(order_id=order.pk)
        if key_ids is not None:
            keys = keys.filter(pk__in=key_ids)
        keys = list(keys) if order.keys_visible else []
        if not keys or (key_ids is not None and len(keys) != len(set(key_ids))):
            raise KeyActionRefused(code="KEY_NOT_FOUND", message="This key is not on this order.")
        KeyReveal.objects.bulk_create(
            KeyReveal(order=order, card_key=key, ip=ip or None, user_agent=(user_agent or "")[:300]) for key in keys
        )
        inventory_services.keys_audit(key_ids=[key.pk for key in keys], action=KeyAuditEvent.Action.REVEALED,
                                      actor=BUYER, ip=ip or None, detail=f"order {order.order_no}")
    return keys


def order_key_report(*, order_id: int, key_id: int, reason: str, ip: str | None) -> KeyReport:
    """The buyer says a key does not work. Within the product's
    ``auto_replacements_per_order`` the key is replaced at once; otherwise (or
    when no replacement is in stock) the report waits for staff, and the
    buyer's risk history records it. Either way the owner gets an alert."""
    reason = (reason or "").strip()[:500] or "not given"
    with transaction.atomic():
        order = order_lock(id=order_id)  # serialises reports on one order
        key = _delivered_key(order=order, key_id=key_id)
        if KeyReport.objects.filter(card_key=key, status=KeyReportStatus.OPEN).exists():
            raise KeyActionRefused(code="ALREADY_REPORTED", message="This key was already reported; staff will reply.")
        allowed = key.product.auto_replacements_per_order
        replaced = KeyReport.objects.filter(
            order=order, card_key__product=key.product, status=KeyReportStatus.REPLACED
        ).count()
        if replaced < allowed:
            try:
                with transaction.atomic():
                    new_id = order_key_replace(order_id=order.pk, key_id=key.pk, actor=BUYER, reason=reason, ip=ip)
            except inventory_services.KeysUnavailable:
                logger.warning("order %s: no key in stock to replace a reported one", order.order_no)
            else:
                report = KeyReport.objects.create(order=order, card_key=key, reason=reason, ip=ip or None,
                                                  status=KeyReportStatus.REPLACED, replacement_key_id=new_id)
                _key_report_alert(report=report, order=order, product_name=str(key.product))
                return report
        report = KeyReport.objects.create(order=order, card_key=key, reason=reason, ip=ip or None,
                                          status=KeyReportStatus.OPEN)
        _key_report_alert(report=report, order=order, product_name=str(key.product))
        events_save(event_key_reported(order, key=key.pk, report=report.pk))
        risk_event_for_order(kind=RiskEventKind.KEY_REPORTED, order_id=order.pk)
    return report


def _key_report_alert(*, report: KeyReport, order: Order, product_name: str) -> None:
    """Tell the owner about a report. One alert per report. The buyer's reason
    stays on the report page: buyers paste the key into it, and key material
    never goes into an alert. Call inside the report's transaction."""
    state = "replaced automatically" if report.status == KeyReportStatus.REPLACED else "waiting for staff"
    owner_alert_raise(
        kind=AlertKind.KEY_REPORT, dedupe_key=f"key-report:{report.pk}",
        subject=f"Key reported on order {order.order_no} ({product_name}): {state}",
        body=(f"The buyer of order {order.order_no} says a key of {product_name} (key #{report.card_key_id}) "
              f"does not work ({state}).\n"
              f"Report: {settings.SITE_URL}/admin/shop/keyreport/{report.pk}/change/"),
    )


def key_report_replace(*, report_id: int, actor: str) -> int:
    """Replace the key of an open report (staff, or ``redeliver
    --replace-invalid``): the reported key is voided and kept on the line as
    evidence, a new one is handed over, the report is resolved. Returns the
    new key's id; raises KeysUnavailable (nothing changed) when none is in stock."""
    with transaction.atomic():
        report = KeyReport.objects.select_for_update().get(pk=report_id)
        if report.status != KeyReportStatus.OPEN:
            raise KeyActionRefused(code="REPORT_NOT_OPEN", message="This report was already dealt with.")
        return _key_replace_resolving(order_id=report.order_id, key_id=report.card_key_id, actor=actor,
                                      reason=f"reported: {report.reason}"[:200])


def order_key_staff_replace(*, order_id: int, key_id: int, actor: str, reason: str, ip: str | None = None,
                            resend: bool = False) -> int:
    """Staff replace one delivered key of an order (from the order page),
    reported or not: as ``key_report_replace``, the key is voided and kept on
    the line, a fresh one is claimed from stock and handed over (the order
    page shows it at once; ``resend`` also emails / texts the order's keys
    again), the timeline and the key's audit trail record it, and any open
    report on the key is resolved. Returns the new key's id.

    Raises KeyActionRefused (REASON_REQUIRED), KeysUnavailable (no key in
    stock), KeyStateError (not a delivered key of this order) or
    OrderTransitionError (keys not handed over): nothing changed."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise KeyActionRefused(code="REASON_REQUIRED", message="Say why the key is replaced.")
    with transaction.atomic():
        new_id = _key_replace_resolving(order_id=order_id, key_id=key_id, actor=actor, reason=reason[:200], ip=ip)
        if resend:
            order_resend(order_id=order_id, actor=actor)
    return new_id


def _key_replace_resolving(*, order_id: int, key_id: int, actor: str, reason: str, ip: str | None = None) -> int:
    """Replace the key and resolve the open reports on it (the core of both
    replacements). Call inside a transaction."""
    new_id = order_key_replace(order_id=order_id, key_id=key_id, actor=actor, reason=reason, ip=ip)
    KeyReport.objects.filter(card_key_id=key_id, status=KeyReportStatus.OPEN).update(
        status=KeyReportStatus.RESOLVED, replacement_key_id=new_id)
    return new_id
