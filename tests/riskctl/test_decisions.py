"""Risk decisions at checkout and at payment, and the scenarios from the field."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone, translation

from delivery.models import OwnerAlert
from inventory.models import CardKey, CardKeyStatus
from riskctl.identity import BuyerContext
from riskctl.models import (
    Assessment,
    IdentifierKind,
    ListEntry,
    ListType,
    PurchaseLimit,
    ReviewItem,
    RiskEvent,
    Rule,
    Thresholds,
)
from riskctl.services import CheckoutBlocked, buyer_block, buyer_unblock, risk_event_record
from shop.models import Order, OrderEventType, OrderStatus
from shop.selectors import order_keys
from shop.services import CheckoutError, checkout_place_order, order_fulfil, order_mark_paid, order_review_approve

pytestmark = pytest.mark.django_db

DEVICE = "0123456789abcdef0123456789abcdef.1a2b3c4d"


def _checkout(product, email, *, device="", ip="198.51.100.1", quantity=1):
    return checkout_place_order(product_slug=product.slug, quantity=quantity, email=email, client_ip=ip,
                                device=device).order


def _pay(order) -> str:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=order, actor="test")
        return order_fulfil(order=order)


def test_allow_list_beats_block_list_beats_rules(make_product):
    # given
    product = make_product(keys=5)
    ListEntry.objects.create(list_type=ListType.BLOCK, kind=IdentifierKind.EMAIL_DOMAIN, value="*.example.net",
                             reason="fraud ring")
    ListEntry.objects.create(list_type=ListType.ALLOW, kind=IdentifierKind.EMAIL, value="boss@shop.example.net",
                             reason="the owner")
    # when / then
    with pytest.raises(CheckoutBlocked):
        _checkout(product, "x@mail.example.net")
    order = _checkout(product, "boss@shop.example.net")
    assert Assessment.objects.get(order=order).decision == "ALLOW"


def test_cidr_block(make_product):
    product = make_product(keys=5)
    ListEntry.objects.create(list_type=ListType.BLOCK, kind=IdentifierKind.IP, value="203.0.113.0/24", reason="x")
    with pytest.raises(CheckoutBlocked) as blocked:
        _checkout(product, "a@example.com", ip="203.0.113.77")
    assessment = Assessment.objects.get(ref=blocked.value.ref)
    assert (assessment.order_id, assessment.reasons[0]["rule"]) == (None, "block-list")
    assert Order.objects.count() == 0


def test_block_buyer_blocks_all_identifiers_and_unblock_reports_what_still_blocks(make_product):
    # given
    buyer = BuyerContext(email="a@example.com", ip="198.51.100.9", device=DEVICE, phone="+8613800000000")
    ListEntry.objects.create(list_type=ListType.BLOCK, kind=IdentifierKind.IP, value="198.51.100.0/24", reason="range")
    # when
    entries = buyer_block(buyer=buyer, reason="chargeback")
    still = buyer_unblock(buyer=buyer)
    # then
    assert sorted(e.kind for e in entries) == ["DEVICE", "EMAIL", "IP", "PHONE"]
    assert [(e.kind, e.value) for e in still] == [("IP", "198.51.100.0/24")]


def test_score_thresholds_per_product(make_product):
    # given: a disposable email scores 25; this product reviews from 20
    product = make_product(keys=5)
    Thresholds.objects.create(product=product, review_at=20, block_at=90)
    # when
    order = _checkout(product, "x@mailinator.com")
    # then
    assessment = Assessment.objects.get(order=order)
    assert (assessment.decision, assessment.score) == ("REVIEW", 25)
    assert assessment.reasons == [{"rule": "disposable-email", "points": 25, "detail": "disposable_email = 1 (== 1)"}]
    assert assessment.rule_versions["disposable-email"] == 1


def test_review_at_payment_holds_keys_then_approval_delivers(make_product, settings,
                                                               django_capture_on_commit_callbacks):
    # given: a buyer whose payment-time score reaches review
    settings.OWNER_ALERT_EMAILS = ["owner@example.com"]
    product = make_product(keys=3)
    Thresholds.objects.create(product=product, review_at=20, block_at=90)
    order = _checkout(product, "x@mailinator.com")
    # when
    status = _pay(order)
    # then: keys reserved but not revealed; the owner told
    order.refresh_from_db()
    assert status == order.status == OrderStatus.IN_REVIEW
    assert CardKey.objects.get(order_line__order=order).status == CardKeyStatus.RESERVED
    assert order_keys(order=order) == []
    assert order.deliveries.count() == 0
    assert ReviewItem.objects.get(order=order).decided_at is None
    assert OwnerAlert.objects.get(dedupe_key="review-queue").subject == "Orders are waiting for review"
    # when: a human approves
    with django_capture_on_commit_callbacks(execute=True):
        order_review_approve(order_id=order.pk, note="known customer")
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    assert [k.status for k in order_keys(order=order)] == [CardKeyStatus.DELIVERED]
    review = ReviewItem.objects.get(order=order)
    assert (review.outcome, review.note) == ("APPROVED", "known customer")
    assert order.events.filter(type=OrderEventType.REVIEW_APPROVED).count() == 1


def test_block_score_at_payment_becomes_review(make_product):
    # given: a product that blocks from 20, passed at checkout before the rule mattered
    product = make_product(keys=2)
    order = _checkout(product, "x@mailinator.com")
    Thresholds.objects.create(product=product, review_at=10, block_at=20)
    # when
    status = _pay(order)
    # then
    assert status == OrderStatus.IN_REVIEW
    payment_assessment = Assessment.objects.get(order=order, stage="PAYMENT")
    assert payment_assessment.decision == "REVIEW"
    assert payment_assessment.reasons[0]["rule"] == "block-at-payment"


def test_scenario_a_account_farm_on_one_device(make_product):
    # given
    product = make_product(keys=50)
    outcomes = []
    # when: 32 accounts on one device within an hour
    for i in range(32):
        try:
            order = _checkout(product, f"farm{i}@example.com", device=DEVICE)
            outcomes.append(Assessment.objects.get(order=order).decision)
        except CheckoutBlocked:
            outcomes.append("BLOCKED")
    # then: the first pass; from the 4th email on the device (+50) they go to
    # review; from the 6th, device velocity (+35) adds up to a block (85).
    # The owner hears of it once, with the count.
    assert outcomes == ["ALLOW"] * 3 + ["REVIEW"] * 2 + ["BLOCKED"] * 27
    assert OwnerAlert.objects.filter(dedupe_key=f"risk-blocked:{DEVICE}").count() == 1
    assert OwnerAlert.objects.get(dedupe_key=f"risk-blocked:{DEVICE}").occurrences == 27


def test_scenario_b_card_testing_from_one_ip(make_product):
    # given: five failed payments from one IP in the last hour
    product = make_product(keys=5)
    tester = BuyerContext(email="t@example.com", ip="192.0.2.66")
    for _ in range(5):
        risk_event_record(kind="PAYMENT_FAILED", buyer=tester)
    # when / then: any email from that IP is blocked
    with pytest.raises(CheckoutBlocked):
        _checkout(product, "fresh@example.com", ip="192.0.2.66")
    assert _checkout(product, "fresh@example.com", ip="192.0.2.67").status == OrderStatus.PENDING_PAYMENT


def test_scenario_c_trusted_returning_buyer_on_a_new_ip_goes_through(make_product):
    # given: a busy IP (many emails) and a big order: enough to review a stranger
    product = make_product(keys=10, price="100.00")
    for i in range(8):
        risk_event_record(kind="ORDER_CREATED", buyer=BuyerContext(email=f"o{i}@example.com", ip="203.0.113.50"))
    old = timezone.now() - timedelta(days=40)
    for email in ("loyal@example.com", "stranger@example.com"):
        risk_event_record(kind="ORDER_PAID", buyer=BuyerContext(email=email), amount=Decimal("10.00"))
    for _ in range(3):
        RiskEvent.objects.create(kind="DELIVERED", email="loyal@example.com", at=old)
    # when
    loyal = _checkout(product, "loyal@example.com", ip="203.0.113.50", quantity=5)
    stranger = _checkout(product, "stranger@example.com", ip="203.0.113.50", quantity=5)
    # then
    loyal_assessment = Assessment.objects.get(order=loyal)
    assert Assessment.objects.get(order=stranger).decision == "REVIEW"
    assert (loyal_assessment.decision, loyal_assessment.features["trusted_buyer"]) == ("ALLOW", 1)


def test_scenario_d_limit_holds_across_emails_sharing_a_device(make_product):
    # given: 3 per device per day
    product = make_product(keys=10)
    PurchaseLimit.objects.create(product=product, per=PurchaseLimit.Per.DEVICE, max_quantity=3, period_hours=24)
    first = _checkout(product, "one@example.com", device=DEVICE, quantity=2)
    _pay(first)
    # when / then
    with pytest.raises(CheckoutError) as refused:
        _checkout(product, "two@example.com", device=DEVICE, quantity=2)
    assert refused.value.code == "LIMIT_EXCEEDED"
    assert refused.value.message == (
        "This product is limited to 3 per device every 24 hours. You can buy 1 more now: lower the quantity."
    )
    with translation.override("zh-hans"):
        with pytest.raises(CheckoutError) as refused_zh:
            _checkout(product, "two@example.com", device=DEVICE, quantity=2)
    assert refused_zh.value.message == "此商品每个设备每 24 小时限购 3 件。您现在还可以购买 1 件，请减少数量。"
    assert _checkout(product, "two@example.com", device=DEVICE, quantity=1).status == OrderStatus.PENDING_PAYMENT


def test_limit_rechecked_at_payment_sends_to_review(make_product):
    # given: two unpaid orders of 2, limit 3 per email (the second got in before the limit existed)
    product = make_product(keys=10)
    a = _checkout(product, "same@example.com", quantity=2)
    b = _checkout(product, "same@example.com", quantity=2)
    PurchaseLimit.objects.create(product=product, per=PurchaseLimit.Per.EMAIL, max_quantity=3)
    # when
    _pay(a)
    status = _pay(b)
    # then
    assert status == OrderStatus.IN_REVIEW
    assert Assessment.objects.get(order=b, stage="PAYMENT").reasons[0]["rule"] == "purchase-limit"


def test_scenario_e_shadow_rule_logs_and_does_nothing(make_product):
    # given: a shadow rule that would block everyone
    product = make_product(keys=5)
    Rule.objects.create(code="try-block-all", description="experiment", feature="quantity", operator=">=",
                        threshold=1, action="BLOCK", shadow=True)
    # when
    order = _checkout(product, "a@example.com")
    # then
    assessment = Assessment.objects.get(order=order)
    assert (assessment.decision, assessment.score) == ("ALLOW", 0)
    assert assessment.shadow == [{"rule": "try-block-all", "points": "BLOCK", "detail": "quantity = 1 (>= 1)"}]


def test_buyer_page_says_the_order_is_being_checked(client, make_product, settings):
    # given
    settings.REVIEW_EXPECTED_WAIT = "usually within 30 minutes"
    product = make_product(keys=2)
    Thresholds.objects.create(product=product, review_at=20, block_at=90)
    client.post(f"/p/{product.slug}/", {"quantity": "1", "email": "x@mailinator.com", "terms": "on"})
    order = Order.objects.get()
    _pay(order)
    # when
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    # then
    assert "being checked by a person, usually within 30 minutes" in page
    assert "PRODUCT-" not in page and "-KEY-" not in page


def test_api_refuses_a_blocked_buyer_with_a_reference(client, make_product):
    # given
    make_product(keys=2, slug="gift")
    ListEntry.objects.create(list_type=ListType.BLOCK, kind=IdentifierKind.EMAIL, value="bad@example.com", reason="x")
    # when
    response = client.post("/api/v1/orders", {"product": "gift", "quantity": 1, "email": "Bad@Example.com"},
                           content_type="application/json")
    # then
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (403, "BLOCKED")
    assessment = Assessment.objects.get()
    assert error["message"] == f"This order cannot be taken. Quote {assessment.ref} to the shop."
    assert Order.objects.count() == 0


def test_failed_payments_through_callbacks_trip_card_testing(client, make_product):
    # given: five orders from one IP whose payments all fail at the gateway
    from payments.models import Payment
    from tests.conftest import NOTIFY_URL, sandbox_notice

    product = make_product(keys=10)
    for i in range(5):
        order = _checkout(product, f"card{i}@example.com", ip="192.0.2.99")
        Payment.objects.create(order=order, provider="sandbox", reference=order.order_no, amount=order.amount,
                               currency=order.currency)
        assert client.post(NOTIFY_URL, sandbox_notice(order, status="FAILED")).content == b"success"
    # when / then
    assert RiskEvent.objects.filter(kind="PAYMENT_FAILED", ip="192.0.2.99").count() == 5
    with pytest.raises(CheckoutBlocked) as blocked:
        _checkout(product, "next@example.com", ip="192.0.2.99")
    assert Assessment.objects.get(ref=blocked.value.ref).reasons[0]["rule"] == "card-testing-ip"


def test_a_delivered_order_counts_in_the_buyers_history(make_product, run_worker, smtp_server,
                                                       django_capture_on_commit_callbacks):
    # given
    product = make_product(keys=2)
    order = _checkout(product, "Loyal@Example.com")
    with django_capture_on_commit_callbacks(execute=True):
        _pay(order)
    # when
    run_worker()
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert list(RiskEvent.objects.filter(order_id=order.pk).order_by("pk").values_list("kind", "email")) == [
        ("ORDER_CREATED", "loyal@example.com"), ("ORDER_PAID", "loyal@example.com"),
        ("DELIVERED", "loyal@example.com"),
    ]


def test_rules_are_read_once_per_cache_window(make_product, settings, django_assert_max_num_queries):
    # given
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from riskctl.services import rules as risk_rules

    settings.RISK_CONFIG_CACHE_SECONDS = 60
    risk_rules._config_cache["until"] = 0.0
    product = make_product(keys=5)
    # when
    with CaptureQueriesContext(connection) as queries:
        _checkout(product, "a@example.com")
        _checkout(product, "b@example.com")
    # then
    rule_reads = [q for q in queries.captured_queries if 'FROM "riskctl_rule"' in q["sql"]]
    assert len(rule_reads) == 1
    risk_rules._config_cache["until"] = 0.0
