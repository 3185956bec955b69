"""Assessments: deciding and storing a checkout's or a payment's risk decision."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal

from riskctl.features import FeatureSubject, features_compute_many
from riskctl.identity import BuyerContext
from riskctl.models import Assessment, Decision, ListType, RiskEvent
from riskctl.services.events import orders_buyers, risk_event_record
from riskctl.services.limits import LimitExceeded, limit_problem
from riskctl.services.lists import list_matches_many
from riskctl.services.rules import _evaluate, _risk_config
from shop.project.inserts import rows_insert_unless_taken

logger = logging.getLogger(__name__)

_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


class CheckoutBlocked(Exception):
    """The buyer may not place this order. ``ref`` lets them appeal without
    telling them (or a fraudster) which rule matched."""

    code = "BLOCKED"

    def __init__(self, *, ref: str):
        super().__init__(f"checkout blocked (ref {ref})")
        self.ref = ref


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


def _assess_many(*, stage: str, subjects: list[AssessSubject], block_becomes_review: bool = False,
                 listed: list | None = None, limits: list | None = None, config: tuple | None = None,
                 ) -> list[Assessment]:
    """Decide and store one assessment per subject, in order: one feature
    query, one list query and one insert for all of them. With
    ``block_becomes_review`` (at payment: the money is taken) a BLOCK is
    stored as REVIEW, a human decides. ``listed`` (the list entries matching
    each subject's buyer), ``limits`` (each subject's purchase-limit problem
    or None) and ``config`` are what the caller has read already (checkout
    reads them first, to refuse before storing anything): not read again."""
    all_features = features_compute_many(subjects=[
        FeatureSubject(buyer=s.buyer, amount=s.amount, quantity=s.quantity, exclude_order_id=s.order_id)
        for s in subjects
    ])
    if listed is None:
        listed = list_matches_many(list_type=None, buyers=[s.buyer for s in subjects])
    config = config or _risk_config()  # read once for the batch
    assessments = []
    for i, (subject, features, entries) in enumerate(zip(subjects, all_features, listed)):
        buyer = subject.buyer
        allowed = [entry for entry in entries if entry.list_type == ListType.ALLOW]
        blocked = [entry for entry in entries if entry.list_type == ListType.BLOCK]
        verdict = _evaluate(features=features, product_id=subject.product_id, config=config)
        if allowed:
            verdict.decision = Decision.ALLOW
            verdict.reasons.insert(0, {"rule": "allow-list", "points": "ALLOW", "detail": str(allowed[0])})
        elif blocked:
            verdict.decision = Decision.BLOCK
            verdict.reasons.insert(0, {"rule": "block-list", "points": "BLOCK", "detail": blocked[0].reason})
        if limits is not None:
            limit = limits[i]
        else:
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
    # One INSERT that skips a taken reference (no savepoint, no transaction
    # of its own: at checkout it commits alone, so a refusal keeps its row).
    unstored = assessments
    for _ in range(5):
        for assessment in unstored:
            assessment.ref = _ref_new()
        rows_insert_unless_taken(objs=unstored, key="ref")
        unstored = [assessment for assessment in unstored if assessment.pk is None]
        if not unstored:
            break
    for assessment in assessments:
        if assessment.shadow:
            logger.info("risk %s shadow rules matched: %s", assessment.ref, [s["rule"] for s in assessment.shadow])
    return assessments


def checkout_assess(*, buyer: BuyerContext, product_id: int, quantity: int, amount: Decimal) -> Assessment:
    """Assess a checkout. A purchase limit refuses with LimitExceeded; BLOCK
    refuses with CheckoutBlocked (the assessment is kept under its reference
    for staff to look up); otherwise the assessment is returned, to be
    attached to the order with ``assessment_attach``. Both lists are read
    once, and the limits once: the allow-list waives the limits, and what
    was read decides the assessment too."""
    listed = list_matches_many(list_type=None, buyers=[buyer])[0]
    config = _risk_config()
    allowed = any(entry.list_type == ListType.ALLOW for entry in listed)
    problem = None if allowed else limit_problem(buyer=buyer, product_id=product_id, quantity=quantity,
                                                 config=config)
    if problem:
        raise LimitExceeded(problem)
    subject = AssessSubject(buyer=buyer, product_id=product_id, quantity=quantity, amount=amount)
    assessment = _assess_many(stage=Assessment.Stage.CHECKOUT, subjects=[subject], listed=[listed], limits=[None],
                              config=config)[0]
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
