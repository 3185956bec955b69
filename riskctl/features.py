"""Features of a buyer, computed from the RiskEvent log: velocity per
identifier, linked accounts, first-seen age, history and trust."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from riskctl.identity import BuyerContext, email_domain_disposable
from riskctl.models import RiskEvent
from riskctl.models import RiskEventKind as K

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
TRUSTED_MIN_DELIVERED = 3
TRUSTED_MIN_AGE = timedelta(days=30)


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature means, for people: a group, a short label and a help
    text (all lazily translated; the rule admin offers features by label)."""

    group: str
    label: str
    help: str


IDENT_WORDS = {"email": _("email"), "ip": _("IP address"), "device": _("device"), "phone": _("phone")}
WINDOW_WORDS = {"1h": _("hour"), "24h": _("24 hours"), "7d": _("7 days")}
_VELOCITY, _FAILED, _LINKED = _("How often (velocity)"), _("Failed payments"), _("Linked accounts")
_HISTORY, _ORDER = _("The buyer's history"), _("This order")


def _orders_info(ident: str, w: str) -> FeatureInfo:
    words = {"ident": IDENT_WORDS[ident], "window": WINDOW_WORDS[w]}
    return FeatureInfo(
        _VELOCITY,
        format_lazy(_("Orders from this {ident} in the last {window}"), **words),
        format_lazy(_("How many orders were placed with the buyer's {ident} in the last {window} "
                      "(this order not counted)."), **words),
    )


def _failed_info(ident: str, w: str) -> FeatureInfo:
    words = {"ident": IDENT_WORDS[ident], "window": WINDOW_WORDS[w]}
    return FeatureInfo(
        _FAILED,
        format_lazy(_("Failed payments by this {ident} in the last {window}"), **words),
        format_lazy(_("How many payments with the buyer's {ident} failed in the last {window}: "
                      "many in a row is how stolen cards are tested."), **words),
    )


# Every feature a rule may name, with what it means (shown in the rule admin
# and used to put an assessment's reasons into words).
FEATURES: dict[str, FeatureInfo] = {
    **{f"orders_{ident}_{w}": _orders_info(ident, w) for ident in ("email", "ip", "device", "phone") for w in WINDOWS},
    **{f"failed_payments_{ident}_{w}": _failed_info(ident, w)
       for ident in ("email", "ip", "device") for w in ("1h", "24h")},
    "emails_per_device_24h": FeatureInfo(
        _LINKED, _("Emails used on this device in 24 hours"),
        _("How many different emails were used on the buyer's device in the last 24 hours, this one included: "
          "several is one person with many accounts.")),
    "emails_per_ip_24h": FeatureInfo(
        _LINKED, _("Emails used from this IP address in 24 hours"),
        _("How many different emails ordered from the buyer's IP address in the last 24 hours, this one "
          "included. Offices, schools and mobile networks share IPs, so expect some.")),
    "first_seen_hours": FeatureInfo(
        _HISTORY, _("Hours since this email was first seen"),
        _("How long ago this email first ordered here, in hours; 0 means it is new.")),
    "disposable_email": FeatureInfo(
        _HISTORY, _("Throw-away email address"),
        _("1 if the email is from a throw-away (disposable) mailbox provider, else 0.")),
    "delivered_orders": FeatureInfo(
        _HISTORY, _("Orders delivered to this email before"),
        _("How many earlier orders of this email were delivered.")),
    "refunds": FeatureInfo(
        _HISTORY, _("Refunds of this email's orders"), _("How many of this email's orders were refunded.")),
    "disputes": FeatureInfo(
        _HISTORY, _("Payment disputes by this email"),
        _("How many of this email's payments were disputed (chargebacks).")),
    "resend_requests": FeatureInfo(
        _HISTORY, _("Resend requests in 7 days"),
        _("How many times this email asked for its keys to be sent again in the last 7 days.")),
    "keys_reported": FeatureInfo(
        _HISTORY, _("Keys reported as not working"),
        _("How many keys this email reported as not working.")),
    "trusted_buyer": FeatureInfo(
        _HISTORY, _("Trusted returning buyer"),
        _("1 if the email has at least 3 delivered orders older than 30 days and never disputed a payment, "
          "else 0.")),
    "amount": FeatureInfo(_ORDER, _("Order amount"), _("What the order costs, in the shop's currency.")),
    "quantity": FeatureInfo(_ORDER, _("Keys in the order"), _("How many keys the order is for.")),
    "amount_vs_history": FeatureInfo(
        _ORDER, _("Amount compared with the buyer's largest before"),
        _("This order's amount divided by the largest amount this email paid before (0 without history): "
          "5 means five times as much.")),
    "new_buyer_quantity": FeatureInfo(
        _ORDER, _("Keys ordered by a new buyer"),
        _("The number of keys in the order when the email has never ordered before, else 0.")),
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
