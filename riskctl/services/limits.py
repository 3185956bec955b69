"""Purchase limits (限购): LimitProblem, LimitExceeded and the check against a buyer's events."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from riskctl.identity import BuyerContext
from riskctl.models import PurchaseLimit, RiskEvent
from riskctl.services.rules import _risk_config


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


_LIMIT_FIELD = {PurchaseLimit.Per.EMAIL: "email", PurchaseLimit.Per.DEVICE: "device",
                PurchaseLimit.Per.PHONE: "phone", PurchaseLimit.Per.IP: "ip"}


def limit_problem(*, buyer: BuyerContext, product_id: int, quantity: int,
                  exclude_order_id: int | None = None, config: tuple | None = None) -> LimitProblem | None:
    """Why this purchase would go over a 限购 limit of the product, or None.

    Counts keys already paid for in the period, plus orders placed but not yet
    paid within the stock hold (they may still be paid). A limit set on the
    product a variant belongs to counts the buyer's purchases of every one of
    its variants. Every limit is counted in one aggregate query (none without
    a limit); the first, in id order, that the purchase would pass is the answer."""
    now = timezone.now()
    hold_start = now - timedelta(minutes=settings.ORDER_HOLD_MINUTES)
    limits = [(scoped, _LIMIT_FIELD[scoped.limit.per]) for scoped in (config or _risk_config())[2].get(product_id, [])]
    limits = [(scoped.limit, scoped.product_ids, field, getattr(buyer, field)) for scoped, field in limits
              if getattr(buyer, field)]
    if not limits:
        return None
    product_ids = sorted({pid for _, scope, _, _ in limits for pid in scope})
    events = RiskEvent.objects.filter(product_id__in=product_ids).filter(
        functools.reduce(operator.or_, (Q(**{field: value}) for _, _, field, value in limits)))
    if exclude_order_id is not None:
        events = events.exclude(order_id=exclude_order_id)
    paid_orders = RiskEvent.objects.filter(kind="ORDER_PAID", product_id__in=product_ids).values("order_id")
    sums = {}
    for i, (limit, scope, field, value) in enumerate(limits):
        mine = Q(**{field: value}, product_id__in=scope)
        sums[f"paid_{i}"] = Sum("quantity", filter=mine & Q(kind="ORDER_PAID",
                                                            at__gte=now - timedelta(hours=limit.period_hours)))
        sums[f"pending_{i}"] = Sum("quantity", filter=mine & Q(kind="ORDER_CREATED", at__gte=hold_start)
                                   & ~Q(order_id__in=paid_orders))
    counted = events.aggregate(**sums)
    for i, (limit, _, _, _) in enumerate(limits):
        bought = (counted[f"paid_{i}"] or 0) + (counted[f"pending_{i}"] or 0)
        if bought + quantity > limit.max_quantity:
            return LimitProblem(max_quantity=limit.max_quantity, per=limit.per, period_hours=limit.period_hours,
                                left=max(0, limit.max_quantity - bought))
    return None
