"""The paid path has one implementation for one notice and for many: a batch
must end exactly as applying its notices one by one, in order, would.

Hypothesis draws shops (products with little stock, one priced for review),
buyers who share addresses, orders (some of two lines, some expired, some
holding their keys since checkout) and a
mix of notices (exact, over- and under-payments, wrong currency, declines,
repeats of a trade, trade ids reused across orders, refunds before and after
the payment, partial refunds, disputes, unknown references). Each mix is
stored once, then applied notice by notice and, from the same starting
point, as one batch; the end states must be equal.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from delivery.models import Delivery, OwnerAlert
from inventory import services as inventory_services
from inventory.models import CardKey
from payments.models import Payment, PaymentEvent, Refund
from payments.providers.base import CallbackNotice, NoticeKind
from payments.services import payment_notices_apply
from payments.services.inbox import _event_insert
from riskctl import services as risk_services
from riskctl.identity import BuyerContext
from riskctl.models import Assessment, ReviewItem, RiskEvent, Rule, RuleAction
from riskctl.services import rules as risk_rules
from shop.models import Order, OrderLine, OrderStatus

pytestmark = pytest.mark.django_db

NOTICE_KINDS = ["exact", "exact", "exact", "over", "under", "currency", "declined", "repeat", "reused",
                "refund_full", "refund_partial", "refund_by_trade", "dispute", "unknown"]

orders_strategy = st.lists(
    st.fixed_dictionaries({
        "product": st.integers(0, 2), "quantity": st.integers(1, 2), "buyer": st.integers(0, 3),
        "second_line": st.booleans(), "expired": st.booleans(), "held": st.booleans(),
    }),
    min_size=1, max_size=6,
)
notices_strategy = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(NOTICE_KINDS)), min_size=1, max_size=10)
stock_strategy = st.lists(st.integers(0, 4), min_size=3, max_size=3)


class _Undo(Exception):
    """Rolls an example back."""


def _rules() -> None:
    for code, feature, threshold in [("card-testing", "failed_payments_ip_1h", "2"),
                                     ("failed-before", "failed_payments_email_1h", "1"),
                                     ("big-jump", "amount_vs_history", "3"), ("disputer", "disputes", "1"),
                                     ("big-orders", "amount", "50")]:
        Rule.objects.create(code=code, description=code, feature=feature, operator=">=",
                            threshold=Decimal(threshold), action=RuleAction.REVIEW)
    risk_rules._config_cache["until"] = 0.0


def _shop(*, make_product, make_unpaid_order, stock, orders) -> list[Order]:
    products = [make_product(keys=stock[0]), make_product(keys=stock[1]),
                make_product(keys=stock[2], price="60.00")]
    made = []
    for spec in orders:
        product = products[spec["product"]]
        buyer = BuyerContext(email=f"b{spec['buyer']}@example.com", ip=f"10.0.0.{spec['buyer'] % 2}",
                             device=f"dev-{spec['buyer']}")
        order = make_unpaid_order(product=product, quantity=spec["quantity"], email=buyer.email)
        assessment = risk_services.checkout_assess(buyer=buyer, product_id=product.pk, quantity=spec["quantity"],
                                                   amount=order.amount)
        risk_services.assessment_attach(assessment=assessment, order_id=order.pk, product_id=product.pk,
                                        quantity=spec["quantity"])
        fields = {"client_ip": buyer.ip, "buyer_device": buyer.device, "buyer_email": buyer.email}
        if spec["held"] and not spec["expired"]:  # placed through checkout: its keys set aside, if there were any
            inventory_services.keys_hold(line_id=order.lines.get().pk, product_id=product.pk,
                                         quantity=spec["quantity"])
        if spec["second_line"]:
            other = products[(spec["product"] + 1) % 2]
            OrderLine.objects.create(order=order, product=other, quantity=1, unit_price=other.price,
                                     amount=other.price)
        if spec["expired"]:
            fields["status"] = OrderStatus.EXPIRED
        Order.objects.filter(pk=order.pk).update(**fields)
        made.append(order)
    return made


def _notice(index: int, kind: str, order: Order) -> CallbackNotice:
    """The ``index``-th notice of the mix, of ``kind``, about ``order``."""
    payment = order.payments.get()
    trade = f"TR-{order.order_no}"
    base = {"external_id": f"N{index:03d}", "reference": payment.reference, "amount": payment.amount,
            "currency": payment.currency, "succeeded": True, "transaction_id": trade}
    if kind == "over":
        base["amount"] = payment.amount + 1
    elif kind == "under":
        base["amount"] = payment.amount - 1
    elif kind == "currency":
        base["currency"] = "USD"
    elif kind == "declined":
        base["succeeded"] = False
    elif kind == "repeat":  # the provider's second trade for the same order
        base["transaction_id"] = f"{trade}-2"
    elif kind == "reused":  # a trade id the provider also reported for another order
        base["transaction_id"] = "TR-SHARED"
    elif kind in ("refund_full", "refund_partial", "refund_by_trade"):
        base["kind"] = NoticeKind.REFUND
        if kind == "refund_partial":
            base["amount"] = Decimal("1.00")
        if kind == "refund_by_trade":  # names the provider's payment id only
            base["reference"] = ""
    elif kind == "dispute":
        base.update(kind=NoticeKind.DISPUTE, payload={"reason": "fraudulent"})
    elif kind == "unknown":
        base["reference"] = f"NOPE-{index}"
    return CallbackNotice(**base)


def _snapshot(orders: list[Order]) -> dict:
    """Everything the paid path writes, by natural keys (no ids that differ between runs)."""
    numbers = {order.pk: order.order_no for order in Order.objects.all()}

    def clean(data: dict) -> dict:
        return {k: v for k, v in data.items() if k not in ("ref", "refund")}

    lines = dict(OrderLine.objects.values_list("pk", "order_id"))
    return {
        "orders": {
            order.order_no: (order.status, [(e.type, e.actor, clean(e.data)) for e in order.events.order_by("id")])
            for order in Order.objects.filter(pk__in=[o.pk for o in orders]).order_by("id")
        },
        "payments": sorted(Payment.objects.values_list("reference", "status", "external_id")),
        "notices": sorted((e.external_id, e.outcome, e.reason_code, e.payment.reference if e.payment else None)
                          for e in PaymentEvent.objects.select_related("payment")),
        "keys": sorted((k.pk, k.status, numbers.get(lines.get(k.order_line_id))) for k in CardKey.objects.all()),
        "deliveries": sorted((numbers[d.order_id], d.channel, d.status) for d in Delivery.objects.all()),
        "reviews": sorted((numbers[r.order_id], r.outcome or "") for r in ReviewItem.objects.all()),
        "refunds": sorted((r.payment.reference, r.amount, r.status) for r in Refund.objects.select_related("payment")),
        "alerts": sorted((a.kind, re.sub(r"^(low-stock:\d+):.*", r"\1", a.dedupe_key)) for a in OwnerAlert.objects.all()),
        "risk_events": Counter((e.kind, numbers.get(e.order_id), e.email) for e in RiskEvent.objects.all()),
        "assessments": sorted((numbers[a.order_id], a.stage, a.decision, a.score)
                              for a in Assessment.objects.filter(stage=Assessment.Stage.PAYMENT)),
    }


def _apply_and_snapshot(*, event_ids: list[int], one_by_one: bool, orders: list[Order]) -> dict:
    sid = transaction.savepoint()
    if one_by_one:
        for event_id in event_ids:
            payment_notices_apply(event_ids=[event_id])
    else:
        assert payment_notices_apply() == len(event_ids)
    state = _snapshot(orders)
    transaction.savepoint_rollback(sid)
    return state


@pytest.mark.slow
@examples(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stock=stock_strategy, orders=orders_strategy, notices=notices_strategy)
# An order short of stock on its second line gives up the key its checkout
# held on the first: the next order in the batch gets it, as it would one by one.
@example(stock=[1, 0, 0], notices=[(0, "exact"), (1, "exact")], orders=[
    {"product": 0, "quantity": 1, "buyer": 0, "second_line": True, "expired": False, "held": True},
    {"product": 0, "quantity": 1, "buyer": 1, "second_line": False, "expired": False, "held": False},
])
def test_a_batch_ends_as_its_notices_one_by_one(stock, orders, notices, make_product, make_unpaid_order, queued,
                                                settings):
    settings.PAYMENTS_APPLY_BATCH = 100
    try:
        with transaction.atomic():
            # given: a shop, its orders, and the mix of notices stored in the inbox
            _rules()
            made = _shop(make_product=make_product, make_unpaid_order=make_unpaid_order, stock=stock, orders=orders)
            event_ids = []
            for index, (which, kind) in enumerate(notices):
                event_id = _event_insert(provider_id="sandbox", notice=_notice(index, kind, made[which % len(made)]))
                assert event_id is not None
                event_ids.append(event_id)
            # when: applied one by one, and (from the same start) as one batch
            one_by_one = _apply_and_snapshot(event_ids=event_ids, one_by_one=True, orders=made)
            together = _apply_and_snapshot(event_ids=event_ids, one_by_one=False, orders=made)
            # then
            assert together == one_by_one
            raise _Undo
    except _Undo:
        pass
    finally:
        risk_rules._config_cache["until"] = 0.0
