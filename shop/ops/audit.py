"""The invariants of DESIGN.md, checked against the database (``manage.py audit``).

Each check is a read-only selector returning the ids that break it. They read
the committed state; a check never changes anything, so the audit may run
against production at any time (it takes no locks beyond plain SELECTs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import connection, models
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from delivery.models import AlertKind, Channel, DeliveryStatus, OwnerAlert
from delivery.services import deliveries_with_live_job
from inventory import sealing
from inventory.models import CardKey, CardKeyStatus
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from shop.models import ManualAnswers, Order, OrderLine, OrderStatus, Product, ProductKind
from shop.project.paging import keyset_rows
from shop.services.manual import manual_answers_aad

# Keys an order owns (one set aside at checkout, CardKeyStatus.HELD, is not its yet).
OWNED = (CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED)
# Orders whose every line must hold exactly its quantity of keys.
KEYED_STATUSES = (OrderStatus.PAID, OrderStatus.IN_REVIEW, OrderStatus.FULFILLING, OrderStatus.DELIVERED)
# Orders that must hold no key at all.
KEYLESS_STATUSES = (OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED, OrderStatus.AWAITING_STOCK,
                    OrderStatus.PREPARING)
PAID_OR_LATER = (*KEYED_STATUSES, OrderStatus.AWAITING_STOCK, OrderStatus.PREPARING, OrderStatus.REFUNDED)
MANUAL = Q(product__kind=ProductKind.MANUAL)
# How many delivered keys invariant 6 looks for in every text column.
PLAINTEXT_SAMPLE = 200


@dataclass
class AuditResult:
    number: int
    title: str
    offending: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.offending


def audit_key_single_line() -> list[str]:
    """1. No key on two order lines (a same fingerprint sold on two lines, across
    products too), and no line holding more keys than its quantity. Copies of
    a reusable key share its fingerprint by design: check 7 watches them."""
    offending = []
    shared = (
        CardKey.objects.filter(status__in=OWNED, source__isnull=True).values("fingerprint")
        .annotate(lines=Count("order_line", distinct=True)).filter(lines__gt=1).values_list("fingerprint", flat=True)
    )
    keys = CardKey.objects.filter(status__in=OWNED, fingerprint__in=list(shared)).order_by("id")
    offending += [f"key:{pk}" for pk in keys.values_list("pk", flat=True)]
    over = (
        OrderLine.objects.annotate(held=Count("card_keys", filter=Q(card_keys__status__in=OWNED)))
        .filter(held__gt=F("quantity")).order_by("id")
    )
    offending += [f"line:{pk}" for pk in over.values_list("pk", flat=True)]
    return offending


def audit_lines_have_their_keys() -> list[str]:
    """2. Every line of a paid order holds exactly ``quantity`` keys (reserved
    counts: IN_REVIEW), unless the order waits for stock or was refunded; an
    unpaid or waiting order holds none. Keys set aside at checkout (HELD)
    belong to unpaid orders only, at most ``quantity`` a line. A manual
    product's line holds its content instead: check 8."""
    lines = OrderLine.objects.annotate(held=Count("card_keys", filter=Q(card_keys__status__in=OWNED)),
                                       on_hold=Count("card_keys", filter=Q(card_keys__status=CardKeyStatus.HELD)))
    wrong = lines.filter(
        (Q(order__status__in=KEYED_STATUSES) & ~Q(held=F("quantity")) & ~MANUAL)
        | (Q(order__status__in=KEYLESS_STATUSES) & Q(held__gt=0))
        | (~Q(order__status=OrderStatus.PENDING_PAYMENT) & Q(on_hold__gt=0))
        | Q(on_hold__gt=F("quantity"))
    ).order_by("id")
    return [f"line:{pk}" for pk in wrong.values_list("pk", flat=True)]


def _expected_channels(order: Order) -> set[str]:
    products = [line.product for line in order.lines.all()]
    channels = {Channel.INBOX}
    if any(p.deliver_by_email for p in products):
        channels.add(Channel.EMAIL)
    if order.phone and any(p.deliver_by_sms for p in products):
        channels.add(Channel.SMS)
    return channels


def _live_job_ids(delivery_ids: list[int]) -> set[int] | None:
    """Deliveries whose send job is queued, scheduled or running; None when
    Redis cannot be asked (reported as unknown, not as a violation)."""
    try:
        return deliveries_with_live_job(delivery_ids=delivery_ids)
    except Exception:  # noqa: BLE001
        return None


def audit_fulfilling_deliveries() -> list[str]:
    """3. A FULFILLING order has a Delivery per channel; each is SENT, FAILED
    with a dead-letter alert, or PENDING with a live job or young enough for
    the sweeper to re-create its job."""
    offending = []
    orders = Order.objects.filter(status=OrderStatus.FULFILLING).prefetch_related("lines__product", "deliveries")
    grace = timedelta(seconds=settings.SWEEP_ORPHAN_AFTER_SECONDS + 5 * settings.SWEEP_INTERVAL_SECONDS)
    stale_pending = []
    for order in orders.order_by("id"):
        deliveries = list(order.deliveries.all())
        missing = _expected_channels(order) - {d.channel for d in deliveries}
        if missing:
            offending.append(f"order:{order.pk}")
        for delivery in deliveries:
            if delivery.status == DeliveryStatus.PENDING and delivery.created_at < timezone.now() - grace:
                stale_pending.append(delivery.pk)
            elif delivery.status == DeliveryStatus.FAILED and not OwnerAlert.objects.filter(
                kind=AlertKind.DEAD_LETTER, dedupe_key=f"dead-letter:{delivery.channel}",
                last_seen_at__gte=delivery.created_at,
            ).exists():
                offending.append(f"delivery:{delivery.pk}")
    live = _live_job_ids(stale_pending)
    if live is not None:
        offending += [f"delivery:{pk}" for pk in stale_pending if pk not in live]
    return offending


def audit_callbacks_applied_once() -> list[str]:
    """4. A duplicate, forged or mismatched callback changed nothing: an accepted
    notice names one payment, matching it; a payment is accepted once; an order
    has at most one succeeded payment."""
    offending = []
    accepted = PaymentEvent.objects.filter(outcome=PaymentEventOutcome.ACCEPTED)
    offending += [f"event:{pk}" for pk in accepted.filter(payment__isnull=True).order_by("id").values_list("pk", flat=True)]
    mismatched = accepted.filter(payment__isnull=False).filter(
        Q(amount__lt=F("payment__amount")) | ~Q(currency=F("payment__currency"))
        | ~Q(payment__status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED])
        # The payment's id at the provider: the notice's own id where the
        # provider sends one notice per trade (EPay), else the trade it names
        # (a Stripe event evt_… names its payment intent pi_…).
        | ~Q(payment__external_id=Coalesce(NullIf(F("transaction_id"), Value("")), F("external_id")))
    )
    offending += [f"event:{pk}" for pk in mismatched.order_by("id").values_list("pk", flat=True)]
    twice = (
        accepted.filter(payment__isnull=False).values("payment").annotate(n=Count("id")).filter(n__gt=1)
        .order_by("payment").values_list("payment", flat=True)
    )
    offending += [f"payment:{pk}" for pk in twice]
    doubly_paid = (
        Payment.objects.filter(status=PaymentStatus.SUCCEEDED).values("order").annotate(n=Count("id"))
        .filter(n__gt=1).order_by("order").values_list("order", flat=True)
    )
    offending += [f"order:{pk}" for pk in doubly_paid]
    return offending


def audit_payments_not_lost() -> list[str]:
    """5. Every successful notice (accepted, or extra money kept for a refund)
    maps to an order that is PAID or later."""
    successful = PaymentEvent.objects.filter(outcome__in=[PaymentEventOutcome.ACCEPTED, PaymentEventOutcome.EXTRA])
    lost = successful.filter(Q(payment__isnull=True) | ~Q(payment__order__status__in=PAID_OR_LATER))
    offending = [f"event:{pk}" for pk in lost.order_by("id").values_list("pk", flat=True)]
    unpaid = Payment.objects.filter(status=PaymentStatus.SUCCEEDED).exclude(order__status__in=PAID_OR_LATER)
    offending += [f"payment:{pk}" for pk in unpaid.order_by("id").values_list("pk", flat=True)]
    return offending


def _like_escape(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def audit_no_plaintext() -> list[str]:
    """6. Every key is sealed (opens, current version); no text column of any
    table holds the plaintext of a sample of the delivered keys."""
    offending = []
    sample = []
    for pk, product_id, sealed, status in keyset_rows(
        CardKey.objects.values_list("pk", "product_id", "secret_sealed", "status"), chunk_size=2000
    ):
        sealed = bytes(sealed)
        try:
            if sealed[:1] != sealing.VERSION:
                raise sealing.SealError("no version byte")
            plaintext = sealing.secret_open(sealed, product_id=product_id)
        except sealing.SealError:
            offending.append(f"key:{pk}")
            continue
        if status == CardKeyStatus.DELIVERED and len(sample) < PLAINTEXT_SAMPLE and len(plaintext) >= 6:
            sample.append(_like_escape(plaintext))
    if sample:
        offending += _plaintext_columns_holding(patterns=sample)
    return offending


def _plaintext_columns_holding(*, patterns: list[str]) -> list[str]:
    found = []
    text_fields = (models.CharField, models.TextField, models.JSONField)
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if not model._meta.managed or model._meta.proxy:
                continue
            table, pk_column = model._meta.db_table, model._meta.pk.column
            for fld in model._meta.concrete_fields:
                if not isinstance(fld, text_fields):
                    continue
                cursor.execute(
                    f"SELECT {quote(pk_column)} FROM {quote(table)} "
                    f"WHERE {quote(fld.column)}::text LIKE ANY(%s) ORDER BY 1",
                    [patterns],
                )
                found += [f"{table}.{fld.column}:{row[0]}" for row in cursor.fetchall()]
    return found


def audit_reusable_copies() -> list[str]:
    """7. Only a reusable product's key is handed to more than one buyer: every
    copy is of a key in stock of its own product, sealed the same; a unique
    product has no copies; a reusable product sold no more than its cap."""
    copies = CardKey.objects.filter(source__isnull=False)
    wrong = copies.filter(
        ~Q(product_id=F("source__product_id")) | ~Q(product__kind=ProductKind.REUSABLE)
        | ~Q(fingerprint=F("source__fingerprint")) | ~Q(secret_sealed=F("source__secret_sealed"))
        | Q(source__source__isnull=False) | Q(source__order_line__isnull=False)
    ).order_by("id")
    offending = [f"key:{pk}" for pk in wrong.values_list("pk", flat=True)]
    over = Product.objects.filter(sales_cap__isnull=False).annotate(
        sales=Count("card_keys", filter=Q(card_keys__source__isnull=False, card_keys__status__in=OWNED)),
    ).filter(sales__gt=F("sales_cap")).order_by("id")
    return offending + [f"product:{pk}" for pk in over.values_list("pk", flat=True)]


def audit_manual_orders() -> list[str]:
    """8. A manual product's order: its content (one key a line, entered by
    staff) once handed over, none before (paid, in review, in the queue);
    never a key in stock (a manual product sells none); the buyer's answers
    sealed (they open)."""
    lines = OrderLine.objects.filter(MANUAL).annotate(
        held=Count("card_keys", filter=Q(card_keys__status__in=OWNED)))
    wrong = lines.filter(
        (Q(order__status__in=Order.KEYS_VISIBLE) & ~Q(held=1))
        | (Q(order__status__in=[OrderStatus.PAID, OrderStatus.IN_REVIEW, OrderStatus.PREPARING]) & Q(held__gt=0))
    ).order_by("order_id").values_list("order_id", flat=True).distinct()
    offending = [f"order:{pk}" for pk in wrong]
    stocked = CardKey.objects.filter(product__kind=ProductKind.MANUAL, status=CardKeyStatus.AVAILABLE).order_by("id")
    offending += [f"key:{pk}" for pk in stocked.values_list("pk", flat=True)]
    for pk, line_id, sealed in ManualAnswers.objects.order_by("id").values_list("pk", "order_line_id", "answers_sealed"):
        try:
            sealing.blob_open(bytes(sealed), aad=manual_answers_aad(line_id))
        except sealing.SealError:
            offending.append(f"answers:{pk}")
    return offending


CHECKS = [
    (1, "no key on more than one order line, no line over its quantity", audit_key_single_line),
    (2, "every line of a paid order has exactly its keys, only unpaid ones hold keys aside",
     audit_lines_have_their_keys),
    (3, "every FULFILLING order has its deliveries on their way", audit_fulfilling_deliveries),
    (4, "duplicate/forged/mismatched callbacks changed nothing", audit_callbacks_applied_once),
    (5, "every successful payment maps to a paid order", audit_payments_not_lost),
    (6, "no plaintext key in the database", audit_no_plaintext),
    (7, "a key goes to many buyers only as copies of a reusable product's key, within its cap",
     audit_reusable_copies),
    (8, "a manual order holds its content once delivered, none before; its answers are sealed", audit_manual_orders),
]


def audit_run() -> list[AuditResult]:
    return [AuditResult(number=n, title=title, offending=check()) for n, title, check in CHECKS]
