"""Risk events: what each buyer ordered and paid for, recorded for the features and limits."""

from __future__ import annotations

from decimal import Decimal

from riskctl.identity import BuyerContext
from riskctl.models import Assessment, RiskEvent


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
