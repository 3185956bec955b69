"""Reconciliation: ask the providers about payments whose notify never came.

A gateway's notify can be lost (its retries ran out while the shop was down,
a firewall ate it). For every payment still waiting, the providers that can
answer (``PaymentProvider.query``) are asked, outside any transaction; a
trade they report as paid goes through the same callback path as a notify,
so it is applied exactly once even if the notify turns up later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from payments.methods import ProviderUnknown, provider_get
from payments.models import Payment, PaymentStatus
from payments.providers.base import ProviderUnreachable
from payments.services.inbox import payment_callback_handle
from shop.models import OrderStatus

logger = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    checked: int = 0
    completed: list[str] = field(default_factory=list)  # references now paid
    refused: dict[str, str] = field(default_factory=dict)  # reference → code (paid, but not matching)
    unanswered: int = 0  # provider cannot answer, or the trade is not paid


def payments_reconcile(
    *, min_age: timedelta = timedelta(minutes=2), max_age: timedelta = timedelta(days=7), provider_id: str = ""
) -> ReconcileResult:
    """Complete the payments that were paid but never notified.

    Looks at payments still CREATED whose order awaits payment or expired,
    opened between ``max_age`` and ``min_age`` ago (younger ones may simply
    not be paid yet).
    """
    now = timezone.now()
    waiting = Payment.objects.filter(
        status=PaymentStatus.CREATED,
        order__status__in=[OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED],
        created_at__lte=now - min_age,
        created_at__gte=now - max_age,
    ).order_by("id")
    if provider_id:
        waiting = waiting.filter(provider=provider_id)
    result = ReconcileResult()
    for payment in waiting.iterator():
        result.checked += 1
        try:
            provider = provider_get(payment.provider)
        except ProviderUnknown:
            result.unanswered += 1
            continue
        try:
            notice = provider.query(payment=payment)
        except ProviderUnreachable as exc:  # one gateway down must not stop the run
            logger.warning("reconcile: %s did not answer about %s (%s)", provider.id, payment.reference, exc.code)
            result.unanswered += 1
            continue
        if notice is None or not notice.succeeded:
            result.unanswered += 1
            continue
        outcome = payment_callback_handle(provider_id=provider.id, notice=notice)
        if outcome.accepted:
            result.completed.append(payment.reference)
            logger.warning("reconcile: %s %s was paid without a notify; completed", provider.id, payment.reference)
        else:
            result.refused[payment.reference] = outcome.code
    return result
