"""Risk events written for orders by the higher apps, one order or a batch."""

from decimal import Decimal

import pytest

from riskctl.models import Assessment, RiskEvent
from riskctl.services import risk_events_for_orders

pytestmark = pytest.mark.django_db


def test_events_for_a_batch_of_orders_carry_each_buyers_identifiers_in_two_statements(
    django_assert_num_queries, make_product, make_unpaid_order
):
    # given: three orders placed through checkout, and one without a checkout assessment
    product = make_product()
    orders = [make_unpaid_order(product=product, email=f"b{i}@example.com") for i in range(4)]
    for i, order in enumerate(orders[:3]):
        Assessment.objects.create(ref=f"R-TEST{i}", stage=Assessment.Stage.CHECKOUT, order=order, decision="ALLOW",
                                  score=0, email=order.email, ip=f"10.0.0.{i}", device=f"dev-{i}",
                                  amount=Decimal("10"), quantity=1)
    # when
    with django_assert_num_queries(2):
        created = risk_events_for_orders(kind="DELIVERED", orders=[(o.pk, o.amount) for o in orders])
    # then
    assert len(created) == 3
    assert sorted(RiskEvent.objects.values_list("order_id", "kind", "email", "ip", "device", "amount")) == [
        (orders[i].pk, "DELIVERED", f"b{i}@example.com", f"10.0.0.{i}", f"dev-{i}", Decimal("10.00"))
        for i in range(3)
    ]
