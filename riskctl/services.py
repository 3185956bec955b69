"""Risk decisions: lists, purchase limits, rules and the review queue.

Allow list beats block list beats rules. Rules add points to a 0–100 score
(or decide outright); the product's or the global thresholds turn the score
into ALLOW < review_at ≤ REVIEW < block_at ≤ BLOCK. Every decision is stored
as an Assessment with its reasons, features and rule versions.
"""

from __future__ import annotations

import ipaddress
import logging
import operator
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from riskctl.features import FeatureSubject, features_compute_many
from riskctl.identity import BuyerContext, email_normalise, ip_normalise  # noqa: F401 (re-exported)
from riskctl.models import (
    Assessment,
    Decision,
    IdentifierKind,
    ListEntry,
    ListType,
    PurchaseLimit,
    ReviewItem,
    RiskEvent,
    Rule,
    RuleAction,
    Thresholds,
)
from riskctl.reasons import number_plain

logger = logging.getLogger(__name__)

_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


class CheckoutBlocked(Exception):
    """The buyer may not place this order. ``ref`` lets them appeal without
    telling them (or a fraudster) which rule matched."""

    code = "BLOCKED"

    def __init__(self, *, ref: str):
        super().__init__(f"checkout blocked (ref {ref})")
        self.ref = ref


@dataclass(frozen=True)
class LimitProblem:
    """Why a purchase would go over a 限购 limit: ``str()`` is the staff's
    English line kept in the assessment's reasons; ``message()`` is the
    buyer's sentence in the active language."""

    max_quantity: int
    per: str  # PurchaseLimit.Per
    period_hours: int
    left: int

    def __str__(self) -> str:
        return (f"This product is limited to {self.max_quantity} per {PurchaseLimit.Per(self.per).label} every "
                f"{self.period_hours} hours; you can buy {self.left} more now.")

    def message(self) -> str:
        per = {
            PurchaseLimit.Per.EMAIL: gettext("email address"), PurchaseLimit.Per.DEVICE: gettext("device"),
            PurchaseLimit.Per.PHONE: gettext("phone number"), PurchaseLimit.Per.IP: gettext("network address"),
        }[self.per]
        limit = gettext("This product is limited to %(max)s per %(per)s every %(hours)s hours.") % {
            "max": self.max_quantity, "per": per, "hours": self.period_hours}
        if self.left:
            more = ngettext("You can buy %(left)s more now: lower the quantity.",
                            "You can buy %(left)s more now: lower the quantity.", self.left) % {"left": self.left}
        else:
            more = gettext("You have reached it for now; try again when the period is over.")
        # Two sentences: a space between them in English, none in Chinese.
        return gettext("%(limit)s %(more)s") % {"limit": limit, "more": more}


class LimitExceeded(Exception):
    code = "LIMIT_EXCEEDED"

    def __init__(self, problem: LimitProblem):
        super().__init__(str(problem))
        self.problem = problem

    @property
    def message(self) -> str:
        return self.problem.message()


# --- lists ------------------------------------------------------------------------


def _live_entries(list_type: str | None):
    entries = ListEntry.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
    return entries.filter(list_type=list_type) if list_type else entries


def list_matches(*, list_type: str | None, buyer: BuyerContext) -> list[ListEntry]:
    """The live entries of one list (or of both, with None) that match any
    identifier of the buyer."""
    return list_matches_many(list_type=list_type, buyers=[buyer])[0]


def _email_domains(buyer: BuyerContext) -> list[str]:
    """The buyer's email domain and the wildcards that cover it."""
    parts = buyer.email_domain.split(".")
    return [buyer.email_domain, *(f"*.{'.'.join(parts[i:])}" for i in range(1, len(parts) - 1)),
            f"*.{buyer.email_domain}"]


def list_matches_many(*, list_type: str | None, buyers: list[BuyerContext]) -> list[list[ListEntry]]:
    """``list_matches`` for each buyer, in order, from one query."""
    exact = Q(pk__in=[])
    for buyer in buyers:
        exact |= Q(kind=IdentifierKind.EMAIL, value=buyer.email)
        if buyer.device:
            exact |= Q(kind=IdentifierKind.DEVICE, value=buyer.device)
        if buyer.phone:
            exact |= Q(kind=IdentifierKind.PHONE, value=buyer.phone)
        exact |= Q(kind=IdentifierKind.EMAIL_DOMAIN, value__in=_email_domains(buyer))
    if any(buyer.ip for buyer in buyers):  # IP entries may be ranges: matched below, fetched in the same query
        exact |= Q(kind=IdentifierKind.IP)
    entries = list(_live_entries(list_type).filter(exact).order_by("id")) if buyers else []
    networks = {entry.pk: ipaddress.ip_network(entry.value, strict=False)
                for entry in entries if entry.kind == IdentifierKind.IP}

    def matches(entry: ListEntry, buyer: BuyerContext) -> bool:
        if entry.kind == IdentifierKind.IP:
            return bool(buyer.ip) and ipaddress.ip_address(buyer.ip) in networks[entry.pk]
        if entry.kind == IdentifierKind.EMAIL_DOMAIN:
            return entry.value in _email_domains(buyer)
        return entry.value == {IdentifierKind.EMAIL: buyer.email, IdentifierKind.DEVICE: buyer.device,
                               IdentifierKind.PHONE: buyer.phone}.get(entry.kind) and bool(entry.value)

    return [[entry for entry in entries if matches(entry, buyer)] for buyer in buyers]


# How long "block this buyer" lasts unless the owner says otherwise: an email,
# a device or a phone is one person's; an IP address is often shared (mobile
# networks, offices), so it is blocked for a day only.
BLOCK_DEFAULT_DURATIONS = {
    IdentifierKind.EMAIL: timedelta(days=30),
    IdentifierKind.DEVICE: timedelta(days=30),
    IdentifierKind.PHONE: timedelta(days=30),
    IdentifierKind.IP: timedelta(hours=24),
}


def buyer_block(*, buyer: BuyerContext, reason: str, user=None, kinds=None,
                expires_at: dict | None = None) -> list[ListEntry]:
    """Block identifiers of a buyer: ``kinds`` (IdentifierKind values; None:
    every one the buyer gave), each until ``expires_at[kind]`` (a datetime,
    or None for never); a kind left out of ``expires_at`` gets
    ``BLOCK_DEFAULT_DURATIONS``. An identifier already blocked keeps the
    longer of its block and this one. Returns the entries now blocking."""
    now = timezone.now()
    expires_at = expires_at or {}
    wanted = None if kinds is None else set(kinds)
    entries = []
    for kind, value in _identifiers(buyer):
        if wanted is not None and kind not in wanted:
            continue
        until = expires_at[kind] if kind in expires_at else now + BLOCK_DEFAULT_DURATIONS[kind]
        entry, created = ListEntry.objects.get_or_create(
            list_type=ListType.BLOCK, kind=kind, value=value,
            defaults={"reason": reason[:200], "created_by": user, "expires_at": until},
        )
        live_longer = entry.expires_at is None or (until is not None and entry.expires_at >= until)
        if not created and not live_longer:
            entry.expires_at, entry.reason, entry.created_by = until, reason[:200], user
            entry.save(update_fields=["expires_at", "reason", "created_by"])
        entries.append(entry)
    return entries


def buyer_unblock(*, buyer: BuyerContext) -> list[ListEntry]:
    """Remove the buyer's exact block entries; return what still blocks them
    (a domain or a CIDR range entered separately)."""
    for kind, value in _identifiers(buyer):
        ListEntry.objects.filter(list_type=ListType.BLOCK, kind=kind, value=value).delete()
    return list_matches(list_type=ListType.BLOCK, buyer=buyer)


def _identifiers(buyer: BuyerContext):
    pairs = [(IdentifierKind.EMAIL, buyer.email), (IdentifierKind.IP, buyer.ip),
             (IdentifierKind.DEVICE, buyer.device), (IdentifierKind.PHONE, buyer.phone)]
    return [(kind, value) for kind, value in pairs if value]


# --- events -----------------------------------------------------------------------


def risk_event_record(*, kind: str, buyer: BuyerContext, order_id: int | None = None, product_id: int | None = None,
                      quantity: int = 0, amount: Decimal | int = 0) -> RiskEvent:
    return RiskEvent.objects.create(
        kind=kind, order_id=order_id, product_id=product_id, quantity=quantity, amount=amount,
        email=buyer.email, ip=buyer.ip, device=buyer.device, phone=buyer.phone,
    )


def order_buyer(*, order_id: int) -> BuyerContext | None:
    """The identifiers the order was placed with (from its checkout assessment)."""
    return orders_buyers(order_ids=[order_id]).get(order_id)


def orders_buyers(*, order_ids: list[int]) -> dict[int, BuyerContext]:
    """``order_buyer`` of several orders, from one query; orders placed
    without a checkout assessment are left out."""
    latest = (
        Assessment.objects.filter(order_id__in=order_ids, stage=Assessment.Stage.CHECKOUT)
        .order_by("order_id", "-created_at").distinct("order_id")
        .values_list("order_id", "email", "ip", "device", "phone", "user_agent")
    )
    return {order_id: BuyerContext(email=email, ip=ip, device=device, phone=phone, user_agent=user_agent)
            for order_id, email, ip, device, phone, user_agent in latest}


def risk_event_for_order(*, kind: str, order_id: int, amount: Decimal | int = 0) -> RiskEvent | None:
    """Record an event for an order's buyer (payments, delivery and shop call this)."""
    created = risk_events_for_orders(kind=kind, orders=[(order_id, amount)])
    return created[0] if created else None


def risk_events_for_orders(*, kind: str, orders: list[tuple[int, Decimal | int]]) -> list[RiskEvent]:
    """``risk_event_for_order`` for many (order id, amount) at once: two
    statements. Orders placed without a checkout assessment get none."""
    buyers = orders_buyers(order_ids=[order_id for order_id, _ in orders])
    return RiskEvent.objects.bulk_create(
        RiskEvent(kind=kind, order_id=order_id, amount=amount, email=buyers[order_id].email, ip=buyers[order_id].ip,
                  device=buyers[order_id].device, phone=buyers[order_id].phone)
        for order_id, amount in orders if order_id in buyers
    )


# --- purchase limits ------------------------------------------------------------------


_LIMIT_FIELD = {PurchaseLimit.Per.EMAIL: "email", PurchaseLimit.Per.DEVICE: "device",
                PurchaseLimit.Per.PHONE: "phone", PurchaseLimit.Per.IP: "ip"}


def limit_problem(*, buyer: BuyerContext, product_id: int, quantity: int,
                  exclude_order_id: int | None = None, config: tuple | None = None) -> LimitProblem | None:
    """Why this purchase would go over a 限购 limit of the product, or None.

    Counts keys already paid for in the period, plus orders placed but not yet
    paid within the stock hold (they may still be paid)."""
    now = timezone.now()
    hold_start = now - timedelta(minutes=settings.ORDER_HOLD_MINUTES)
    for limit in (config or _risk_config())[2].get(product_id, []):
        field = _LIMIT_FIELD[limit.per]
        value = getattr(buyer, field)
        if not value:
            continue
        events = RiskEvent.objects.filter(**{field: value}, product_id=product_id)
        if exclude_order_id is not None:
            events = events.exclude(order_id=exclude_order_id)
        paid = events.filter(kind="ORDER_PAID", at__gte=now - timedelta(hours=limit.period_hours))
        pending = events.filter(kind="ORDER_CREATED", at__gte=hold_start).exclude(
            order_id__in=RiskEvent.objects.filter(kind="ORDER_PAID", product_id=product_id).values("order_id")
        )
        bought = (paid.aggregate(n=Sum("quantity"))["n"] or 0) + (pending.aggregate(n=Sum("quantity"))["n"] or 0)
        if bought + quantity > limit.max_quantity:
            return LimitProblem(max_quantity=limit.max_quantity, per=limit.per, period_hours=limit.period_hours,
                                left=max(0, limit.max_quantity - bought))
    return None


# --- rules and decisions --------------------------------------------------------------


@dataclass
class _Verdict:
    decision: str
    score: int
    reasons: list
    shadow: list
    versions: dict


_config_cache: dict = {"until": 0.0}


def _risk_config() -> tuple[list[Rule], dict[int | None, tuple[int, int]], dict[int, list[PurchaseLimit]]]:
    """Active rules, all thresholds and the purchase limits by product, re-read at most every
    RISK_CONFIG_CACHE_SECONDS per process: on the paid hot path they are read
    far more often than an owner edits them."""
    now = time.monotonic()
    if now >= _config_cache["until"]:
        _config_cache["rules"] = list(Rule.objects.filter(active=True).order_by("code"))
        _config_cache["thresholds"] = {
            row.product_id: (row.review_at, row.block_at) for row in Thresholds.objects.all()
        }
        limits: dict[int, list[PurchaseLimit]] = {}
        for limit in PurchaseLimit.objects.order_by("id"):
            limits.setdefault(limit.product_id, []).append(limit)
        _config_cache["limits"] = limits
        _config_cache["until"] = now + settings.RISK_CONFIG_CACHE_SECONDS
    return _config_cache["rules"], _config_cache["thresholds"], _config_cache["limits"]


def _thresholds(product_id: int | None, thresholds: dict) -> tuple[int, int]:
    return thresholds.get(product_id) or thresholds.get(None) or (50, 80)


def _evaluate(*, features: dict, product_id: int | None, config: tuple) -> _Verdict:
    score, hard, reasons, shadow, versions = 0, None, [], [], {}
    rules, thresholds, _ = config
    for rule in rules:
        versions[rule.code] = rule.version
        value = features.get(rule.feature)
        if value is None or not _OPERATORS[rule.operator](Decimal(str(value)), rule.threshold):
            continue
        hit = {"rule": rule.code, "points": rule.points if rule.action == RuleAction.SCORE else rule.action,
               "detail": f"{rule.feature} = {number_plain(value, 2 if rule.feature == 'amount' else None)} "
                         f"({rule.operator} {number_plain(rule.threshold)})"}
        if rule.shadow:
            shadow.append(hit)
        elif rule.action == RuleAction.SCORE:
            score += rule.points
            reasons.append(hit)
        else:
            reasons.append(hit)
            hard = Decision.BLOCK if rule.action == RuleAction.BLOCK or hard == Decision.BLOCK else Decision.REVIEW
    score = max(0, min(100, score))
    review_at, block_at = _thresholds(product_id, thresholds)
    if hard == Decision.BLOCK or score >= block_at:
        decision = Decision.BLOCK
    elif hard == Decision.REVIEW or score >= review_at:
        decision = Decision.REVIEW
    else:
        decision = Decision.ALLOW
    reasons.sort(key=lambda r: (isinstance(r["points"], int), -r["points"] if isinstance(r["points"], int) else 0))
    return _Verdict(decision, score, reasons, shadow, versions)


def _ref_new() -> str:
    return "R-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(5))


@dataclass(frozen=True)
class AssessSubject:
    """What one assessment is of: a buyer buying ``quantity`` keys of a
    product (None: several) for ``amount``, for an order or not yet."""

    buyer: BuyerContext
    product_id: int | None
    quantity: int
    amount: Decimal
    order_id: int | None = None


def _assess(*, stage: str, buyer: BuyerContext, product_id: int | None, quantity: int, amount: Decimal,
            order_id: int | None = None) -> Assessment:
    subject = AssessSubject(buyer=buyer, product_id=product_id, quantity=quantity, amount=amount, order_id=order_id)
    return _assess_many(stage=stage, subjects=[subject])[0]


def _assess_many(*, stage: str, subjects: list[AssessSubject], block_becomes_review: bool = False) -> list[Assessment]:
    """Decide and store one assessment per subject, in order: one feature
    query, one list query and one insert for all of them. With
    ``block_becomes_review`` (at payment: the money is taken) a BLOCK is
    stored as REVIEW, a human decides."""
    all_features = features_compute_many(subjects=[
        FeatureSubject(buyer=s.buyer, amount=s.amount, quantity=s.quantity, exclude_order_id=s.order_id)
        for s in subjects
    ])
    all_listed = list_matches_many(list_type=None, buyers=[s.buyer for s in subjects])
    config = _risk_config()  # read once for the batch
    assessments = []
    for subject, features, listed in zip(subjects, all_features, all_listed):
        buyer = subject.buyer
        allowed = [entry for entry in listed if entry.list_type == ListType.ALLOW]
        blocked = [entry for entry in listed if entry.list_type == ListType.BLOCK]
        verdict = _evaluate(features=features, product_id=subject.product_id, config=config)
        if allowed:
            verdict.decision = Decision.ALLOW
            verdict.reasons.insert(0, {"rule": "allow-list", "points": "ALLOW", "detail": str(allowed[0])})
        elif blocked:
            verdict.decision = Decision.BLOCK
            verdict.reasons.insert(0, {"rule": "block-list", "points": "BLOCK", "detail": blocked[0].reason})
        limit = limit_problem(buyer=buyer, product_id=subject.product_id, quantity=subject.quantity,
                              exclude_order_id=subject.order_id, config=config) \
            if subject.product_id and not allowed else None
        if limit and verdict.decision == Decision.ALLOW:
            verdict.decision = Decision.REVIEW
        if limit:
            verdict.reasons.insert(0, {"rule": "purchase-limit", "points": "REVIEW", "detail": str(limit)})
        if block_becomes_review and verdict.decision == Decision.BLOCK:
            verdict.decision = Decision.REVIEW
            verdict.reasons.insert(0, {"rule": "block-at-payment", "points": "REVIEW",
                                       "detail": "would block, but the money is taken: a human decides"})
        assessments.append(Assessment(
            stage=stage, order_id=subject.order_id, product_id=subject.product_id, decision=verdict.decision,
            score=verdict.score, reasons=verdict.reasons, shadow=verdict.shadow, rule_versions=verdict.versions,
            features=features, email=buyer.email, ip=buyer.ip, device=buyer.device, phone=buyer.phone,
            user_agent=buyer.user_agent, amount=subject.amount, quantity=subject.quantity,
        ))
    for _ in range(5):
        for assessment in assessments:
            assessment.ref = _ref_new()
        try:
            with transaction.atomic():
                Assessment.objects.bulk_create(assessments)
            break
        except IntegrityError:
            continue  # reference collision: draw again
    for assessment in assessments:
        if assessment.shadow:
            logger.info("risk %s shadow rules matched: %s", assessment.ref, [s["rule"] for s in assessment.shadow])
    return assessments


def checkout_assess(*, buyer: BuyerContext, product_id: int, quantity: int, amount: Decimal) -> Assessment:
    """Assess a checkout. A purchase limit refuses with LimitExceeded; BLOCK
    refuses with CheckoutBlocked (the assessment is kept under its reference
    for staff to look up); otherwise the assessment is returned, to be
    attached to the order with ``assessment_attach``."""
    problem = None if list_matches(list_type=ListType.ALLOW, buyer=buyer) else limit_problem(
        buyer=buyer, product_id=product_id, quantity=quantity)
    if problem:
        raise LimitExceeded(problem)
    assessment = _assess(stage=Assessment.Stage.CHECKOUT, buyer=buyer, product_id=product_id, quantity=quantity,
                         amount=amount)
    if assessment.decision == Decision.BLOCK:
        logger.warning("checkout blocked: ref %s score %d", assessment.ref, assessment.score)
        raise CheckoutBlocked(ref=assessment.ref)
    return assessment


def assessment_attach(*, assessment: Assessment, order_id: int, product_id: int, quantity: int) -> None:
    """Link the checkout assessment to the order just created, and log the
    order on the buyer's identifiers. Call inside the checkout transaction."""
    Assessment.objects.filter(pk=assessment.pk).update(order_id=order_id)
    buyer = BuyerContext(email=assessment.email, ip=assessment.ip, device=assessment.device, phone=assessment.phone)
    risk_event_record(kind="ORDER_CREATED", buyer=buyer, order_id=order_id, product_id=product_id,
                      quantity=quantity, amount=assessment.amount)


def payment_assess(*, order_id: int, lines: list[tuple[int, int]], amount: Decimal) -> Assessment:
    """Assess an order at payment (see ``payments_assess``). ``lines`` is
    [(product_id, quantity)]."""
    return payments_assess(orders=[PaidOrder(order_id=order_id, lines=lines, amount=amount)])[order_id]


@dataclass(frozen=True)
class PaidOrder:
    order_id: int
    lines: list[tuple[int, int]]  # (product_id, quantity)
    amount: Decimal


def payments_assess(*, orders: list[PaidOrder]) -> dict[int, Assessment]:
    """Assess orders at payment, a batch at a time (a handful of statements
    whatever its size); log their ORDER_PAID events. The money is taken, so a
    BLOCK here is turned into REVIEW: a human decides. Returns the
    assessments by order id."""
    buyers = orders_buyers(order_ids=[o.order_id for o in orders])
    subjects = []
    for order in orders:
        product_id, quantity = (order.lines[0] if len(order.lines) == 1
                                else (None, sum(q for _, q in order.lines)))
        subjects.append(AssessSubject(buyer=buyers.get(order.order_id) or BuyerContext(email=""),
                                      product_id=product_id, quantity=quantity, amount=order.amount,
                                      order_id=order.order_id))
    assessments = _assess_many(stage=Assessment.Stage.PAYMENT, subjects=subjects, block_becomes_review=True)
    RiskEvent.objects.bulk_create(
        RiskEvent(kind="ORDER_PAID", order_id=order.order_id, product_id=pid, quantity=qty, amount=order.amount,
                  email=subject.buyer.email, ip=subject.buyer.ip, device=subject.buyer.device,
                  phone=subject.buyer.phone)
        for order, subject in zip(orders, subjects) for pid, qty in order.lines
    )
    return {order.order_id: assessment for order, assessment in zip(orders, assessments)}


# --- review queue ------------------------------------------------------------------------


class ReviewClosed(Exception):
    code = "REVIEW_ALREADY_DECIDED"


def review_open(*, order_id: int, assessment: Assessment) -> ReviewItem:
    review, _ = ReviewItem.objects.get_or_create(order_id=order_id, defaults={"assessment": assessment})
    return review


def review_pending(*, order_id: int) -> ReviewItem | None:
    return ReviewItem.objects.filter(order_id=order_id, decided_at__isnull=True).first()


def review_close(*, order_id: int, note: str) -> bool:
    """Close the order's open review without a human decision, because the
    order left review another way (staff refunded it, the buyer disputed the
    payment): it leaves the desk's queue, counted as rejected, the note says
    why. Returns whether a review was open. Call inside a transaction."""
    return ReviewItem.objects.filter(order_id=order_id, decided_at__isnull=True).update(
        outcome=ReviewItem.Outcome.REJECTED, decided_at=timezone.now(), note=note[:500]
    ) == 1


def review_decide(*, order_id: int, outcome: str, user=None, note: str = "") -> ReviewItem:
    """Record the human decision once. Call inside a transaction."""
    updated = ReviewItem.objects.filter(order_id=order_id, decided_at__isnull=True).update(
        outcome=outcome, decided_at=timezone.now(), decided_by=user, note=note
    )
    if updated != 1:
        raise ReviewClosed(f"order {order_id} has no open review")
    return ReviewItem.objects.get(order_id=order_id)
