"""Risk decisions: lists, purchase limits, rules and the review queue.

Allow list beats block list beats rules. Rules add points to a 0–100 score
(or decide outright); the product's or the global thresholds turn the score
into ALLOW < review_at ≤ REVIEW < block_at ≤ BLOCK. Every decision is stored
as an Assessment with its reasons, features and rule versions.

By topic, imported from here: lists (allow and block lists), events (risk
events), limits (purchase limits), rules (the cached rules and scoring),
assess (assessments at checkout and payment), reviews (the review queue).
"""

from riskctl.identity import BuyerContext, email_normalise, ip_normalise  # noqa: F401 (re-exported)
from riskctl.services.assess import (  # noqa: F401
    AssessSubject,
    CheckoutBlocked,
    PaidOrder,
    assessment_attach,
    checkout_assess,
    payment_assess,
    payments_assess,
)
from riskctl.services.events import (  # noqa: F401
    order_buyer,
    orders_buyers,
    risk_event_for_order,
    risk_event_record,
    risk_events_for_orders,
)
from riskctl.services.limits import LimitExceeded, LimitProblem, limit_problem  # noqa: F401
from riskctl.services.lists import (  # noqa: F401
    BLOCK_DEFAULT_DURATIONS,
    buyer_block,
    buyer_unblock,
    list_matches,
    list_matches_many,
)
from riskctl.services.reviews import ReviewClosed, review_close, review_decide, review_open, review_pending  # noqa: F401
