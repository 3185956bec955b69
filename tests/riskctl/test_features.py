"""Features of a buyer, from the RiskEvent log: what each one counts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from riskctl.features import features_compute
from riskctl.identity import BuyerContext
from riskctl.models import RiskEvent
from riskctl.models import RiskEventKind as K

pytestmark = pytest.mark.django_db

BUYER = BuyerContext(email="ann@example.com", ip="203.0.113.7", device="dev-1", phone="")


def _event(kind, *, ago=timedelta(0), order_id=None, amount=0, **identifiers):
    event = RiskEvent.objects.create(kind=kind, order_id=order_id, amount=amount, **identifiers)
    RiskEvent.objects.filter(pk=event.pk).update(at=timezone.now() - ago)


def test_velocity_history_and_linked_emails_are_counted_per_identifier():
    # given: ann's history, and others sharing her device and IP
    _event(K.ORDER_CREATED, email="ann@example.com", ip="203.0.113.7", device="dev-1")
    _event(K.ORDER_CREATED, email="ann@example.com", ago=timedelta(hours=3))
    _event(K.ORDER_CREATED, email="ann@example.com", ago=timedelta(days=3))
    _event(K.PAYMENT_FAILED, ip="203.0.113.7", email="bob@example.com")
    _event(K.ORDER_CREATED, device="dev-1", email="bob@example.com")
    _event(K.ORDER_CREATED, device="dev-1", email="cy@example.com", ago=timedelta(hours=30))  # outside 24 h
    _event(K.DELIVERED, email="ann@example.com", ago=timedelta(days=40))
    _event(K.ORDER_PAID, email="ann@example.com", amount=Decimal("20.00"), ago=timedelta(days=40))
    _event(K.ORDER_CREATED, email="ann@example.com", order_id=99)  # the order being assessed
    _event(K.ORDER_CREATED, email="zed@example.com")  # nobody related
    # when
    features = features_compute(buyer=BUYER, amount=Decimal("50.00"), quantity=2, exclude_order_id=99)
    # then
    assert {name: features[name] for name in (
        "orders_email_1h", "orders_email_24h", "orders_email_7d", "orders_ip_1h", "orders_device_24h",
        "orders_phone_24h", "failed_payments_ip_1h", "failed_payments_email_24h", "emails_per_device_24h",
        "emails_per_ip_24h", "delivered_orders", "amount_vs_history", "new_buyer_quantity", "quantity",
    )} == {
        "orders_email_1h": 1, "orders_email_24h": 2, "orders_email_7d": 3, "orders_ip_1h": 1,
        "orders_device_24h": 2, "orders_phone_24h": 0, "failed_payments_ip_1h": 1, "failed_payments_email_24h": 0,
        "emails_per_device_24h": 2, "emails_per_ip_24h": 2, "delivered_orders": 1, "amount_vs_history": 2.5,
        "new_buyer_quantity": 0, "quantity": 2,
    }
    assert 40 * 24 - 1 < features["first_seen_hours"] < 40 * 24 + 1


def test_a_new_buyer_with_no_identifiers_but_an_email_is_new():
    # given
    _event(K.ORDER_CREATED, email="other@example.com")
    # when
    features = features_compute(buyer=BuyerContext(email="new@example.com"), amount=Decimal("5"), quantity=3)
    # then
    assert (features["first_seen_hours"], features["new_buyer_quantity"], features["emails_per_ip_24h"],
            features["orders_email_24h"], features["trusted_buyer"]) == (0, 3, 1, 0, 0)


def test_features_of_a_batch_are_each_buyers_own_from_one_query(django_assert_num_queries):
    # given: two buyers with different histories, and one never seen
    from riskctl.features import FeatureSubject, features_compute_many

    now = timezone.now()
    RiskEvent.objects.bulk_create([
        RiskEvent(kind=K.ORDER_CREATED, email="a@example.com", ip="10.0.0.1", at=now - timedelta(minutes=5)),
        RiskEvent(kind=K.ORDER_CREATED, email="a@example.com", ip="10.0.0.1", at=now - timedelta(minutes=6)),
        RiskEvent(kind=K.DISPUTE, email="b@example.com", at=now - timedelta(days=2)),
    ])
    buyers = [BuyerContext(email="a@example.com", ip="10.0.0.1"), BuyerContext(email="b@example.com"),
              BuyerContext(email="new@example.com", device="dev-1")]
    subjects = [FeatureSubject(buyer=b, amount=Decimal("10"), quantity=1) for b in buyers]
    # when
    with django_assert_num_queries(1):
        batch = features_compute_many(subjects=subjects)
    # then: the same features as one buyer at a time
    one_by_one = [features_compute(buyer=b, amount=Decimal("10"), quantity=1) for b in buyers]
    assert [{k: v for k, v in f.items() if k != "first_seen_hours"} for f in batch] == \
        [{k: v for k, v in f.items() if k != "first_seen_hours"} for f in one_by_one]
    assert [f["orders_email_1h"] for f in batch] == [2, 0, 0]
    assert [f["disputes"] for f in batch] == [0, 1, 0]
    assert [f["new_buyer_quantity"] for f in batch] == [0, 0, 1]


def test_the_batch_feature_query_reads_only_the_buyers_events_when_most_events_lack_an_identifier():
    # given: 20,000 events of other buyers, none with a phone and a third of
    # them without a device (API orders), with statistics taken
    import json

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from riskctl.features import FeatureSubject, features_compute_many

    RiskEvent.objects.bulk_create(
        RiskEvent(kind=K.ORDER_CREATED, email=f"u{i}@example.com", ip=f"10.1.{i // 256 % 256}.{i % 256}",
                  device="" if i % 3 == 0 else f"dev-{i}", phone="")
        for i in range(20_000)
    )
    _event(K.ORDER_CREATED, email="ann@example.com", ip="203.0.113.7")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {RiskEvent._meta.db_table}")
    subjects = [FeatureSubject(buyer=BUYER, amount=Decimal("10"), quantity=1)] + [
        FeatureSubject(buyer=BuyerContext(email=f"new{i}@example.com", device=f"new-{i}"), amount=Decimal("10"),
                       quantity=1) for i in range(99)]
    # when: the statement, as the service sends it, explained
    with CaptureQueriesContext(connection) as statements:
        features = features_compute_many(subjects=subjects)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statements.captured_queries[-1]['sql']}")
        plan = cursor.fetchone()[0]
    plan = json.dumps(plan if not isinstance(plan, str) else json.loads(plan))
    # then: index lookups per buyer, not every event compared with every buyer
    # (a missing phone made the planner expect each buyer to match all 20,000)
    assert "Seq Scan" not in plan
    assert '"Rows Removed by Join Filter"' not in plan
    assert features[0]["orders_email_1h"] == 1 and features[1]["orders_email_1h"] == 0
