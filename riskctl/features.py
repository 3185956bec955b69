"""Features of a buyer, computed from the RiskEvent log: velocity per
identifier, linked accounts, first-seen age, history and trust."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from riskctl.identity import BuyerContext, email_domain_disposable
from riskctl.models import RiskEvent
from riskctl.models import RiskEventKind as K

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
    """Every feature of this buyer, from ONE aggregate query over the events
    of its identifiers (each feature is a filtered aggregate over them). It
    runs in the paid transaction for every order, so it is written as SQL:
    building the same 25 filtered aggregates through the ORM cost ten times
    the query itself."""
    now = timezone.now()
    identifiers = (("email", buyer.email), ("ip", buyer.ip), ("device", buyer.device), ("phone", buyer.phone))
    columns: list[tuple[str, str, list]] = []  # (feature, SQL aggregate, its params)
    zero: dict[str, float] = {}

    def add(name: str, sql: str, *params) -> None:
        columns.append((name, sql, list(params)))

    for ident, value in identifiers:
        counts = {f"orders_{ident}_{w}": (K.ORDER_CREATED, span) for w, span in WINDOWS.items()}
        if ident != "phone":
            counts |= {f"failed_payments_{ident}_{w}": (K.PAYMENT_FAILED, WINDOWS[w]) for w in ("1h", "24h")}
        for name, (kind, span) in counts.items():
            if value:
                add(name, f"count(*) FILTER (WHERE {ident} = %s AND kind = %s AND at >= %s)", value, kind, now - span)
            else:
                zero[name] = 0
    for ident, value in (("device", buyer.device), ("ip", buyer.ip)):
        # Distinct emails seen on it in 24 h, this buyer's counted once whether seen or not (+1 below).
        name = f"emails_per_{ident}_24h"
        if value:
            add(name, f"count(DISTINCT email) FILTER (WHERE {ident} = %s AND at >= %s AND email <> '' AND email <> %s)",
                value, now - WINDOWS["24h"], buyer.email)
        else:
            zero[name] = 0
    history = {"first": None, "delivered": 0, "delivered_old": 0, "refunds": 0, "disputes": 0, "resends": 0,
               "reported": 0, "max_paid": None}
    if buyer.email:
        email = buyer.email
        add("first", "min(at) FILTER (WHERE email = %s)", email)
        add("delivered", "count(*) FILTER (WHERE email = %s AND kind = %s)", email, K.DELIVERED)
        add("delivered_old", "count(*) FILTER (WHERE email = %s AND kind = %s AND at <= %s)", email, K.DELIVERED,
            now - TRUSTED_MIN_AGE)
        add("refunds", "count(*) FILTER (WHERE email = %s AND kind = %s)", email, K.REFUNDED)
        add("disputes", "count(*) FILTER (WHERE email = %s AND kind = %s)", email, K.DISPUTE)
        add("resends", "count(*) FILTER (WHERE email = %s AND kind = %s AND at >= %s)", email, K.RESEND,
            now - WINDOWS["7d"])
        add("reported", "count(*) FILTER (WHERE email = %s AND kind = %s)", email, K.KEY_REPORTED)
        add("max_paid", "max(amount) FILTER (WHERE email = %s AND kind = %s)", email, K.ORDER_PAID)
    row: dict = {}
    present = [(ident, value) for ident, value in identifiers if value]
    if columns and present:
        where = " OR ".join(f"{ident} = %s" for ident, _ in present)
        params = [p for _, _, ps in columns for p in ps] + [value for _, value in present]
        if exclude_order_id is not None:
            where = f"({where}) AND order_id IS DISTINCT FROM %s"
            params.append(exclude_order_id)
        sql = f"SELECT {', '.join(aggregate for _, aggregate, _ in columns)} FROM {RiskEvent._meta.db_table} WHERE {where}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = dict(zip((name for name, _, _ in columns), cursor.fetchone()))
    values = {**zero, **history, **row}

    features: dict[str, float] = {"amount": float(amount), "quantity": quantity}
    features |= {name: values[name] for name in values if name.startswith(("orders_", "failed_payments_"))}
    for ident in ("device", "ip"):
        features[f"emails_per_{ident}_24h"] = values[f"emails_per_{ident}_24h"] + 1
    first_seen = values["first"]
    features["first_seen_hours"] = round((now - first_seen).total_seconds() / 3600, 2) if first_seen else 0
    features["disposable_email"] = int(email_domain_disposable(buyer.email_domain))
    features["delivered_orders"] = values["delivered"]
    features["refunds"] = values["refunds"]
    features["disputes"] = values["disputes"]
    features["resend_requests"] = values["resends"]
    features["keys_reported"] = values["reported"]
    features["trusted_buyer"] = int(values["delivered_old"] >= TRUSTED_MIN_DELIVERED and values["disputes"] == 0)
    max_paid = values["max_paid"]
    features["amount_vs_history"] = round(float(amount / max_paid), 2) if max_paid else 0
    features["new_buyer_quantity"] = quantity if first_seen is None else 0
    return features
