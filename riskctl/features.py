"""Features of a buyer, computed from the RiskEvent log: velocity per
identifier, linked accounts, first-seen age, history and trust."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class FeatureSubject:
    """One buyer to compute the features of, for an order of ``quantity`` keys
    worth ``amount``; the events of ``exclude_order_id`` (the order being
    assessed) do not count."""

    buyer: BuyerContext
    amount: Decimal
    quantity: int
    exclude_order_id: int | None = None


_IDENTS = ("email", "ip", "device", "phone")


def _aggregates() -> list[tuple[str, str]]:
    """(name, SQL aggregate) of every raw value the features derive from. The
    buyer's identifiers are ``b.<ident>`` (NULL when it has none: a NULL
    never matches, so its counts are 0) and the windows' starts are named
    parameters."""
    columns = []
    for ident in _IDENTS:
        for w in WINDOWS:
            columns.append((f"orders_{ident}_{w}",
                            f"count(*) FILTER (WHERE e.{ident} = b.{ident} AND e.kind = '{K.ORDER_CREATED}' "
                            f"AND e.at >= %(since_{w})s)"))
        if ident != "phone":
            for w in ("1h", "24h"):
                columns.append((f"failed_payments_{ident}_{w}",
                                f"count(*) FILTER (WHERE e.{ident} = b.{ident} AND e.kind = '{K.PAYMENT_FAILED}' "
                                f"AND e.at >= %(since_{w})s)"))
    for ident in ("device", "ip"):
        # Distinct emails seen on it in 24 h, this buyer's counted once whether seen or not (+1 below).
        columns.append((f"emails_per_{ident}_24h",
                        f"count(DISTINCT e.email) FILTER (WHERE e.{ident} = b.{ident} AND e.at >= %(since_24h)s "
                        "AND e.email <> '' AND e.email <> b.email_raw)"))
    history = {
        "first": "min(e.at) FILTER (WHERE e.email = b.email)",
        "delivered": f"count(*) FILTER (WHERE e.email = b.email AND e.kind = '{K.DELIVERED}')",
        "delivered_old": f"count(*) FILTER (WHERE e.email = b.email AND e.kind = '{K.DELIVERED}' "
                         "AND e.at <= %(trusted_before)s)",
        "refunds": f"count(*) FILTER (WHERE e.email = b.email AND e.kind = '{K.REFUNDED}')",
        "disputes": f"count(*) FILTER (WHERE e.email = b.email AND e.kind = '{K.DISPUTE}')",
        "resends": f"count(*) FILTER (WHERE e.email = b.email AND e.kind = '{K.RESEND}' AND e.at >= %(since_7d)s)",
        "reported": f"count(*) FILTER (WHERE e.email = b.email AND e.kind = '{K.KEY_REPORTED}')",
        "max_paid": f"max(e.amount) FILTER (WHERE e.email = b.email AND e.kind = '{K.ORDER_PAID}')",
    }
    return columns + list(history.items())


_COLUMNS = _aggregates()


def features_compute(*, buyer: BuyerContext, amount: Decimal, quantity: int,
                     exclude_order_id: int | None = None) -> dict[str, float]:
    """Every feature of this buyer (see ``features_compute_many``)."""
    return features_compute_many(
        subjects=[FeatureSubject(buyer=buyer, amount=amount, quantity=quantity, exclude_order_id=exclude_order_id)]
    )[0]


def features_compute_many(*, subjects: list[FeatureSubject]) -> list[dict[str, float]]:
    """Every feature of each subject, in order, from ONE query: the buyers are
    joined laterally to one aggregate over the events of their identifiers
    (each raw value a filtered aggregate). It runs in the paid transaction,
    once per batch of orders, so it is written as SQL: building the same
    filtered aggregates through the ORM cost ten times the query itself."""
    if not subjects:
        return []
    now = timezone.now()
    table = RiskEvent._meta.db_table
    params = {
        **{f"since_{w}": now - span for w, span in WINDOWS.items()},
        "trusted_before": now - TRUSTED_MIN_AGE,
        "i": list(range(len(subjects))),
        **{ident: [getattr(s.buyer, ident) or None for s in subjects] for ident in _IDENTS},
        "email_raw": [s.buyer.email for s in subjects],
        "exclude": [s.exclude_order_id for s in subjects],
    }
    sql = f"""
        SELECT b.i, {", ".join(aggregate for _, aggregate in _COLUMNS)}
        FROM unnest(%(i)s::int[], %(email)s::text[], %(ip)s::text[], %(device)s::text[], %(phone)s::text[],
                    %(email_raw)s::text[], %(exclude)s::bigint[])
             AS b(i, email, ip, device, phone, email_raw, exclude_order)
        CROSS JOIN LATERAL (  -- each arm says "<> ''" so that it reads its identifier's partial index
            SELECT * FROM {table} e
            WHERE ((e.email = b.email AND e.email <> '') OR (e.ip = b.ip AND e.ip <> '')
                   OR (e.device = b.device AND e.device <> '') OR (e.phone = b.phone AND e.phone <> ''))
              AND (b.exclude_order IS NULL OR e.order_id IS DISTINCT FROM b.exclude_order)
        ) e
        GROUP BY b.i
        ORDER BY b.i
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = {}
        names = [name for name, _ in _COLUMNS]
        for values in cursor.fetchall():
            found[values[0]] = dict(zip(names, values[1:]))
    return [_features_derive(subject=s, values=found.get(i), now=now) for i, s in enumerate(subjects)]


def _features_derive(*, subject: FeatureSubject, values: dict | None, now) -> dict[str, float]:
    if values is None:  # no event of any of its identifiers: every count is 0
        values = {name: None if name in ("first", "max_paid") else 0 for name, _ in _COLUMNS}
    buyer, amount, quantity = subject.buyer, subject.amount, subject.quantity
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
