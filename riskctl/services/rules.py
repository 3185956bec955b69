"""Risk rules: the cached rules, thresholds and limits, and scoring features against them."""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings

from riskctl.models import Decision, PurchaseLimit, Rule, RuleAction, Thresholds
from riskctl.reasons import number_plain

_OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


@dataclass
class _Verdict:
    decision: str
    score: int
    reasons: list
    shadow: list
    versions: dict


_config_cache: dict = {"until": 0.0}


def _risk_config() -> tuple[list[Rule], dict[int | None, tuple[int, int]], dict[int, list[ScopedLimit]]]:
    """Active rules, all thresholds and the purchase limits by product, re-read at most every
    RISK_CONFIG_CACHE_SECONDS per process: on the paid hot path they are read
    far more often than an owner edits them."""
    now = time.monotonic()
    if now >= _config_cache["until"]:
        _config_cache["rules"] = list(Rule.objects.filter(active=True).order_by("code"))
        _config_cache["thresholds"] = {
            row.product_id: (row.review_at, row.block_at) for row in Thresholds.objects.all()
        }
        _config_cache["limits"] = _limits_by_product()
        _config_cache["until"] = now + settings.RISK_CONFIG_CACHE_SECONDS
    return _config_cache["rules"], _config_cache["thresholds"], _config_cache["limits"]


class ScopedLimit(NamedTuple):
    """A 限购 limit as a checkout of one product meets it, and the products
    whose purchases count against it: the product itself, or, for a limit
    set on a product with variants, every variant of that product (one
    buyer, one membership, whichever duration)."""

    limit: PurchaseLimit
    product_ids: tuple[int, ...]


def _limits_by_product() -> dict[int, list[ScopedLimit]]:
    own: dict[int, list[PurchaseLimit]] = {}
    for limit in PurchaseLimit.objects.order_by("id"):
        own.setdefault(limit.product_id, []).append(limit)
    products = PurchaseLimit._meta.get_field("product").related_model  # shop's Product, named, not imported
    family: dict[int, list[int]] = {}
    for variant_id, parent_id in products.objects.filter(parent_id__in=list(own)).values_list("id", "parent_id"):
        family.setdefault(parent_id, []).append(variant_id)
    scoped = {pid: [ScopedLimit(limit, (pid,)) for limit in limits] for pid, limits in own.items()}
    for parent_id, variant_ids in family.items():
        inherited = [ScopedLimit(limit, tuple(sorted(variant_ids))) for limit in own[parent_id]]
        for variant_id in variant_ids:
            scoped.setdefault(variant_id, []).extend(inherited)
    return scoped


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
