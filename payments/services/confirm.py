"""Query before credit: before a signed notice pays an order, ask the
provider whether that trade is paid, with that amount.

An MD5 merchant key (EPay, epusdt) is easy to leak: a notice signed with it
proves only that someone holds the key. The applier asks first, outside any
transaction and lock, and records the answer on the notice
(``confirmed_at``); a provider that cannot tell yet leaves the notice waiting,
a provider that contradicts it gets it rejected. Never paid blind, never
dropped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.utils import timezone

from payments.methods import ProviderUnknown, methods_all, provider_get
from payments.models import Payment, PaymentEvent, PaymentEventKind
from payments.providers.base import ProviderUnreachable


class NoticeUnconfirmed(Exception):
    """The provider has not (yet) confirmed the notice's trade: it waits."""


CONFIRMED = "CONFIRMED"
CONFIRM_CONCURRENCY = 8


def methods_confirming() -> set[str]:
    return {m.id for m in methods_all() if m.query_before_credit}


def notice_needs_confirmation(event: PaymentEvent, methods: set[str]) -> bool:
    return (event.provider in methods and event.kind == PaymentEventKind.PAYMENT and event.succeeded
            and event.confirmed_at is None)


def notices_confirm(*, events, methods: set[str]) -> dict[int, str]:
    """Ask the providers about the paid notices of methods that query before
    credit, outside any transaction and lock: is this trade paid, with this
    amount? Returns a verdict per event id: CONFIRMED, or why not."""
    waiting = list(events.filter(provider__in=methods, kind=PaymentEventKind.PAYMENT, succeeded=True,
                                 confirmed_at__isnull=True).order_by("id")[: settings.PAYMENTS_APPLY_BATCH])
    payments = {(p.provider, p.reference): p for p in Payment.objects.filter(
        provider__in={e.provider for e in waiting}, reference__in={e.reference for e in waiting})}
    providers = {}
    for method_id in {e.provider for e in waiting}:
        try:
            providers[method_id] = provider_get(method_id)
        except ProviderUnknown:
            providers[method_id] = None
    # The queries are network calls: a few at a time, so a burst of notices
    # waits for the slowest answer, not for the sum of them. The threads
    # touch no database.
    with ThreadPoolExecutor(max_workers=CONFIRM_CONCURRENCY) as pool:
        verdicts = dict(zip([event.pk for event in waiting], pool.map(
            lambda event: notice_verdict(event, payments.get((event.provider, event.reference)),
                                         providers[event.provider]), waiting)))
    confirmed = [pk for pk, verdict in verdicts.items() if verdict == CONFIRMED]
    if confirmed:
        PaymentEvent.objects.filter(pk__in=confirmed, confirmed_at__isnull=True).update(confirmed_at=timezone.now())
    return verdicts


def notice_verdict(event: PaymentEvent, payment: Payment | None, provider) -> str:
    """One query (no database access: it runs in a pool thread)."""
    if payment is None:
        return CONFIRMED  # nothing to credit: the applier rejects it as ORDER_UNKNOWN
    if provider is None:
        return "METHOD_DISABLED: the payment method is disabled; enable it to apply this notice"
    try:
        answer = provider.query(payment=payment)
    except ProviderUnreachable as exc:
        return f"QUERY_UNANSWERED: the provider did not answer the query ({exc.code})"
    if answer is None or not answer.succeeded:
        return "QUERY_NOT_PAID: the provider does not (yet) report this trade as paid"
    if answer.payment_id != (event.transaction_id or event.external_id):
        return f"QUERY_MISMATCH: the provider reports trade {answer.payment_id} for this order"
    if answer.amount != event.amount or (answer.currency and answer.currency != event.currency):
        return f"QUERY_MISMATCH: the provider reports {answer.amount} {answer.currency} paid"
    return CONFIRMED
