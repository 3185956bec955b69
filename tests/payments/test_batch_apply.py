"""The applier's set-based path: a batch of ordinary paid notices is applied
in a fixed number of statements, with exactly the outcome the one-notice
path gives; whatever is odd in a batch takes the one-notice path."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery.models import Channel, Delivery, DeliveryStatus
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from payments.services import payment_notices_apply
from riskctl.models import Assessment, RiskEvent, Rule, RuleAction
from riskctl.services import rules as risk_rules
from shop.models import OrderEventType, OrderLine, OrderStatus
from tests.conftest import NOTIFY_URL, sandbox_notice

pytestmark = pytest.mark.django_db


def _statuses(orders) -> list[str]:
    for order in orders:
        order.refresh_from_db()
    return [order.status for order in orders]


def _store(client, orders, **notice) -> None:
    for order in orders:
        assert client.post(NOTIFY_URL, sandbox_notice(order, **notice)).content == b"success"


def _apply_counting() -> int:
    with CaptureQueriesContext(connection) as statements:
        assert payment_notices_apply() > 0
    return len(statements)


def test_a_batch_costs_the_same_statements_whatever_its_size(client, queued, make_product, make_unpaid_order,
                                                             settings):
    # given: a batch of 3 and a batch of 30 ordinary notices; the payment
    # methods cached as in production (tests read them afresh every time)
    settings.PAYMENT_METHODS_CACHE_SECONDS = 60
    product = make_product(keys=40)
    # (distinct buyers, as in a flash sale: two payments of one buyer are applied one after the
    # other, since the second one's assessment reads what the first one paid)
    small = [make_unpaid_order(product=product, email=f"s{i}@example.com") for i in range(3)]
    _store(client, small)
    small_statements = _apply_counting()
    large = [make_unpaid_order(product=product, email=f"l{i}@example.com") for i in range(30)]
    _store(client, large)
    # when
    large_statements = _apply_counting()
    # then: one statement count for both (the one-notice path took ~20 per notice)
    assert large_statements == small_statements
    assert small_statements <= 33  # it also looks for refunds and disputes reported before, locks keys apart,
    # and finds which products sell reusable keys
    # and takes the keys the orders' checkouts held
    assert _statuses(small + large) == [OrderStatus.FULFILLING] * 33


def test_a_batch_ends_as_the_one_notice_path_would(client, queued, make_product, make_unpaid_order):
    # given
    product = make_product(keys=5)
    orders = [make_unpaid_order(product=product, email=f"b{i}@example.com") for i in range(3)]
    _store(client, orders)
    # when
    payment_notices_apply()
    # then: paid, keys claimed and handed over, the inbox written and the email in the outbox
    assert _statuses(orders) == [OrderStatus.FULFILLING] * 3
    for order in orders:
        assert list(order.events.order_by("at", "id").values_list("type", flat=True)) == [
            OrderEventType.CREATED, OrderEventType.PAID, OrderEventType.KEYS_RESERVED, OrderEventType.DELIVERY_SENT,
        ]
        assert order.events.get(type=OrderEventType.PAID).data == {
            "external_id": sandbox_notice(order)["trade_no"], "amount": "10.00", "late": False}
        assert sorted(order.deliveries.values_list("channel", "status", "recipient")) == [
            (Channel.EMAIL, DeliveryStatus.PENDING, order.email), (Channel.INBOX, DeliveryStatus.SENT, ""),
        ]
        assert order.paid_at is not None and order.hold_expires_at is None
    keys = list(CardKey.objects.filter(status=CardKeyStatus.DELIVERED).order_by("id"))
    assert sorted(k.order_line.order_id for k in keys) == sorted(o.pk for o in orders)  # one key each, none twice
    assert all(k.reserved_at and k.delivered_at for k in keys)
    for key in keys:
        assert list(KeyAuditEvent.objects.filter(card_key=key).order_by("id").values_list("action", "detail")) == [
            (KeyAuditEvent.Action.SOLD, f"order {key.order_line.order.order_no}"),
            (KeyAuditEvent.Action.DELIVERED, f"order {key.order_line.order.order_no}"),
        ]
    assert set(Payment.objects.values_list("status", flat=True)) == {PaymentStatus.SUCCEEDED}
    assert list(PaymentEvent.objects.values_list("outcome", flat=True)) == [PaymentEventOutcome.ACCEPTED] * 3
    assert sorted(PaymentEvent.objects.values_list("payment__order_id", flat=True)) == sorted(o.pk for o in orders)
    assert Assessment.objects.filter(stage=Assessment.Stage.PAYMENT).count() == 3
    assert RiskEvent.objects.filter(kind="ORDER_PAID").count() == 3


def test_a_batch_short_of_stock_serves_the_first_notices_and_holds_the_rest(client, queued, make_product,
                                                                             make_unpaid_order):
    # given: five buyers, three keys
    product = make_product(keys=3)
    orders = [make_unpaid_order(product=product) for _ in range(5)]
    _store(client, orders)
    # when
    payment_notices_apply()
    # then: first come, first served; nothing partial, no key twice
    assert _statuses(orders) == [OrderStatus.FULFILLING] * 3 + [OrderStatus.AWAITING_STOCK] * 2
    for order in orders[3:]:
        assert order.events.get(type=OrderEventType.AWAITING_STOCK).data == {"wanted": 1, "free": 0}
        assert not order.deliveries.exists()
    assert CardKey.objects.filter(status=CardKeyStatus.DELIVERED).values("order_line").distinct().count() == 3
    assert not CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).exists()


def test_odd_notices_in_a_batch_take_the_one_notice_path(client, queued, make_product, make_unpaid_order, settings):
    # given: in one batch, an ordinary notice, an overpaid one, an underpaid
    # one, a second trade for the first order, an order the risk rules hold
    # for review, and an order of two lines
    Rule.objects.create(code="big-orders", description="review big orders", feature="amount", operator=">=",
                        threshold=Decimal("50"), action=RuleAction.REVIEW)
    risk_rules._config_cache["until"] = 0.0
    product, expensive = make_product(keys=10), make_product(keys=2, price="60.00")
    ordinary, overpaid, underpaid = (make_unpaid_order(product=product) for _ in range(3))
    reviewed = make_unpaid_order(product=expensive)
    two_lines = make_unpaid_order(product=product)
    other = make_product(keys=1, price="5.00")
    OrderLine.objects.create(order=two_lines, product=other, quantity=1, unit_price=other.price, amount=other.price)
    _store(client, [ordinary])
    _store(client, [overpaid], amount="12.00")
    _store(client, [underpaid], amount="1.00")
    _store(client, [ordinary], trade_no="SECOND-TRADE")
    _store(client, [reviewed, two_lines])
    # when
    payment_notices_apply()
    # then
    assert _statuses([ordinary, overpaid, underpaid, reviewed, two_lines]) == [
        OrderStatus.FULFILLING, OrderStatus.FULFILLING, OrderStatus.PENDING_PAYMENT, OrderStatus.IN_REVIEW,
        OrderStatus.FULFILLING,
    ]
    outcomes = {(e.reference, e.external_id.startswith("SECOND")): (e.outcome, e.reason_code)
                for e in PaymentEvent.objects.all()}
    assert outcomes == {
        (ordinary.order_no, False): (PaymentEventOutcome.ACCEPTED, ""),
        (ordinary.order_no, True): (PaymentEventOutcome.EXTRA, "ALREADY_PAID"),
        (overpaid.order_no, False): (PaymentEventOutcome.ACCEPTED, "OVERPAID"),
        (underpaid.order_no, False): (PaymentEventOutcome.REJECTED, "AMOUNT_MISMATCH"),
        (reviewed.order_no, False): (PaymentEventOutcome.ACCEPTED, ""),
        (two_lines.order_no, False): (PaymentEventOutcome.ACCEPTED, ""),
    }
    # the held order's key is set aside, not handed over; the two-line order got both its keys
    assert list(CardKey.objects.filter(order_line__order=reviewed).values_list("status", flat=True)) == [
        CardKeyStatus.RESERVED]
    assert not Delivery.objects.filter(order=reviewed).exists()
    assert sorted(CardKey.objects.filter(order_line__order=two_lines).values_list("product_id", "status")) == [
        (product.pk, CardKeyStatus.DELIVERED), (other.pk, CardKeyStatus.DELIVERED)]
    assert not CardKey.objects.filter(order_line__order=underpaid).exists()
    assert Payment.objects.get(order=underpaid).status == PaymentStatus.CREATED
