"""Features of a buyer, computed from the RiskEvent log: velocity per
identifier, linked accounts, first-seen age, history and trust."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from riskctl.identity import BuyerContext, email_domain_disposable
from riskctl.models import RiskEvent, RiskEventKind as K

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
TRUSTED_MIN_DELIVERED = 3
TRUSTED_MIN_AGE = timedelta(days=30)

# Every feature a rule may name, with what it means (shown in the rule admin).
FEATURES = {
    **{f"orders_{ident}_{w}": f"orders placed by this {ident} in the last {w}"
       for ident in ("email", "ip", "device", "phone") for w in WINDOWS},
    **{f"failed_payments_{ident}_{w}": f"failed payments by this {ident} in the last {w}"
       for ident in ("email", "ip", "device") for w in ("1h", "24h")},
    "emails_per_device_24h": "distinct emails seen on this device in 24 h (this one included)",
    "emails_per_ip_24h": "distinct emails seen from this IP in 24 h (this one included)",
    "first_seen_hours": "hours since this email was first seen (0: new)",
    "disposable_email": "1 if the email domain is a throw-away one",
    "delivered_orders": "orders delivered to this email before",
    "refunds": "refunds of this email's orders",
    "disputes": "payment disputes of this email's orders",
    "resend_requests": "resend requests of this email's orders in 7 d",
    "keys_reported": "keys this email reported as not working",
    "trusted_buyer": "1 if ≥ 3 delivered orders older than 30 days and no disputes",
    "amount": "order amount",
    "quantity": "keys in the order",
    "amount_vs_history": "order amount / the largest amount this email paid before (0 without history)",
    "new_buyer_quantity": "keys in the order when the email is new (else 0)",
}


def features_compute(*, buyer: BuyerContext, amount: Decimal, quantity: int,
                     exclude_order_id: int | None = None) -> dict[str, float]:
    now = timezone.now()
    events = RiskEvent.objects.all()
    if exclude_order_id is not None:
        events = events.exclude(order_id=exclude_order_id)
    features: dict[str, float] = {"amount": float(amount), "quantity": quantity}

    for ident, value in (("email", buyer.email), ("ip", buyer.ip), ("device", buyer.device), ("phone", buyer.phone)):
        aggregates = {
            f"orders_{ident}_{w}": Count("id", filter=Q(kind=K.ORDER_CREATED, at__gte=now - span))
            for w, span in WINDOWS.items()
        }
        if ident != "phone":
            aggregates |= {
                f"failed_payments_{ident}_{w}": Count("id", filter=Q(kind=K.PAYMENT_FAILED, at__gte=now - WINDOWS[w]))
                for w in ("1h", "24h")
            }
        if value:
            features |= events.filter(**{ident: value}).aggregate(**aggregates)
        else:
            features |= {name: 0 for name in aggregates}

    for ident, value in (("device", buyer.device), ("ip", buyer.ip)):
        emails = set()
        if value:
            emails = set(
                events.filter(**{ident: value}, at__gte=now - WINDOWS["24h"]).exclude(email="")
                .values_list("email", flat=True).distinct()
            )
        features[f"emails_per_{ident}_24h"] = len(emails | {buyer.email})

    history = events.filter(email=buyer.email or None).aggregate(
        first=Min("at"),
        delivered=Count("id", filter=Q(kind=K.DELIVERED)),
        delivered_old=Count("id", filter=Q(kind=K.DELIVERED, at__lte=now - TRUSTED_MIN_AGE)),
        refunds=Count("id", filter=Q(kind=K.REFUNDED)),
        disputes=Count("id", filter=Q(kind=K.DISPUTE)),
        resends=Count("id", filter=Q(kind=K.RESEND, at__gte=now - WINDOWS["7d"])),
        reported=Count("id", filter=Q(kind=K.KEY_REPORTED)),
        max_paid=Max("amount", filter=Q(kind=K.ORDER_PAID)),
    )
    first_seen = history["first"]
    features["first_seen_hours"] = round((now - first_seen).total_seconds() / 3600, 2) if first_seen else 0
    features["disposable_email"] = int(email_domain_disposable(buyer.email_domain))
    features["delivered_orders"] = history["delivered"]
    features["refunds"] = history["refunds"]
    features["disputes"] = history["disputes"]
    features["resend_requests"] = history["resends"]
    features["keys_reported"] = history["reported"]
    features["trusted_buyer"] = int(history["delivered_old"] >= TRUSTED_MIN_DELIVERED and history["disputes"] == 0)
    max_paid = history["max_paid"]
    features["amount_vs_history"] = round(float(amount / max_paid), 2) if max_paid else 0
    features["new_buyer_quantity"] = quantity if first_seen is None else 0
    return features
