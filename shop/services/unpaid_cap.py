"""The cap on live unpaid orders per buyer and per address, checked in the checkout's transaction."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from shop.models import Order, OrderLine, OrderStatus
from shop.services.checkout_errors import CheckoutError

# The order columns a buyer or an address is counted by (fixed names: they go into the SQL).
_COLUMNS = ("buyer_device", "buyer_email", "client_ip")


def unpaid_orders_cap_check(*, buyer_email: str, device: str, client_ip: str | None, product_id: int,
                            now: datetime) -> None:
    """Refuse a checkout that would give one buyer (a mailbox or a device)
    more than UNPAID_ORDERS_PER_PRODUCT live unpaid orders of this product,
    or UNPAID_ORDERS_MAX in all, or one address more than
    UNPAID_ORDERS_PER_ADDRESS of this product: nobody can hold a hot
    product's stock with throwaway orders, and hundreds of buyers behind one
    carrier NAT still get theirs (TOO_MANY_UNPAID).

    Call inside the checkout transaction: a transaction-level advisory lock
    per identifier (taken in one order, so two checkouts never wait on each
    other in a cycle, and safe behind PgBouncer's transaction pooling) makes
    count-then-insert race-free. Two statements: the locks, then the counts
    (a statement of its own, so its snapshot sees every checkout that
    committed while this one waited). The counts are written in SQL: built
    with the ORM (seven filtered aggregates) they cost more CPU than any
    other statement of the checkout."""
    buyer = [(kind, value) for kind, value in (("buyer_email", buyer_email), ("buyer_device", device)) if value]
    address = [("client_ip", client_ip)] if client_ip and settings.UNPAID_ORDERS_PER_ADDRESS else []
    identifiers = sorted(buyer + address)
    if not identifiers:
        return
    assert all(kind in _COLUMNS for kind, _ in identifiers)
    matches = {kind: f'o."{kind}" = %s' + ("::inet" if kind == "client_ip" else "") for kind, _ in identifiers}
    of_product = (f'EXISTS (SELECT 1 FROM "{OrderLine._meta.db_table}" l '
                  "WHERE l.order_id = o.id AND l.product_id = %s)")
    counts_sql = (
        "SELECT min(o.hold_expires_at), "
        + ", ".join(f"count(*) FILTER (WHERE {matches[kind]})" for kind, _ in identifiers) + ", "
        + ", ".join(f"count(*) FILTER (WHERE {matches[kind]} AND {of_product})" for kind, _ in identifiers)
        + f' FROM "{Order._meta.db_table}" o WHERE o.status = %s AND o.hold_expires_at > %s AND ('
        + " OR ".join(matches[kind] for kind, _ in identifiers) + ")"
    )
    values = [value for _, value in identifiers]
    params = [*values, *(p for value in values for p in (value, product_id)), OrderStatus.PENDING_PAYMENT.value, now,
              *values]
    with connection.cursor() as cursor:
        # One statement takes them all, in this (sorted) order: a loop on the
        # server (migration shop/0017), whose order is guaranteed.
        cursor.execute("SELECT kamidrop_xact_locks(%s::text[])",
                       [[f"kamidrop-unpaid:{kind}:{value}" for kind, value in identifiers]])
        cursor.execute(counts_sql, params)
        first_release, *numbers = cursor.fetchone()
    n = len(identifiers)
    counted_all = {kind: numbers[i] for i, (kind, _) in enumerate(identifiers)}
    counted_product = {kind: numbers[n + i] for i, (kind, _) in enumerate(identifiers)}
    over = [kind for kind, _ in buyer if counted_product[kind] >= settings.UNPAID_ORDERS_PER_PRODUCT
            or counted_all[kind] >= settings.UNPAID_ORDERS_MAX]
    over += [kind for kind, _ in address if counted_product[kind] >= settings.UNPAID_ORDERS_PER_ADDRESS]
    if not over:
        return
    released = timezone.localtime(first_release)
    overall = counted_all[over[0]]
    mine = (f"You already have {overall} unpaid order{'s' if overall != 1 else ''}. Pay one of them "
            f"(it is on its order page), or wait: the first hold ends at {released:%H:%M} ({released:%Z}).")
    network = (f"Too many unpaid orders of this product come from your network right now. Try again after "
               f"{released:%H:%M} ({released:%Z}).")
    raise CheckoutError(code="TOO_MANY_UNPAID", field="email", message=network if over == ["client_ip"] else mine)
