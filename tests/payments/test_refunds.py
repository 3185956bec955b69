"""Refunds through the provider: keys back to stock, order REFUNDED, events, buyer email."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from delivery.models import AlertKind, OwnerAlert
from inventory.models import CardKey, CardKeyStatus
from inventory.services import keys_reserve
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.providers.base import RefundFailed
from payments.providers.sandbox import SandboxProvider
from payments.services import RefundError, payment_refund
from shop.models import Order, OrderEvent, OrderEventType, OrderStatus
from shop.services import OrderTransitionError

pytestmark = pytest.mark.django_db


class RefundRefusingSandbox(SandboxProvider):
    """The sandbox, with its refund endpoint down."""

    def refund(self, *, payment, amount):
        raise RefundFailed("GATEWAY_DOWN", "connection refused")


def _paid(order: Order, *, status: str, reserve: bool = False, provider: str = "sandbox") -> Order:
    """``order`` as the paid flow leaves it in ``status`` (keys reserved if asked)."""
    Payment.objects.filter(order=order).update(
        provider=provider, status=PaymentStatus.SUCCEEDED, external_id=f"TRADE{order.pk}", succeeded_at=timezone.now()
    )
    Order.objects.filter(pk=order.pk).update(status=status, paid_at=timezone.now())
    if reserve:
        for line in order.lines.all():
            keys_reserve(line=line)
    order.refresh_from_db()
    return order


def _state(order: Order) -> dict:
    order.refresh_from_db()
    return {
        "status": order.status,
        "payment": Payment.objects.get(order=order).status,
        "keys": sorted(CardKey.objects.filter(order_line__order=order).values_list("id", "status")),
        "events": OrderEvent.objects.filter(order=order).count(),
        "refunds": Refund.objects.count(),
        "alerts": OwnerAlert.objects.count(),
    }


def test_refund_of_an_order_in_review_releases_its_keys_and_emails_the_buyer(
    make_product, make_unpaid_order, django_capture_on_commit_callbacks, run_worker, mailoutbox
):
    # given: paid, held for review with two keys reserved
    product = make_product(keys=3)
    order = _paid(make_unpaid_order(product=product, quantity=2), status=OrderStatus.IN_REVIEW, reserve=True)
    reserved = list(CardKey.objects.filter(order_line__order=order).values_list("id", flat=True))
    assert len(reserved) == 2
    # when
    with django_capture_on_commit_callbacks(execute=True):
        refund = payment_refund(order=order, actor="staff:alice", reason="review rejected")
    run_worker()
    # then
    assert (refund.status, refund.amount, refund.actor, refund.reason) == (
        RefundStatus.SUCCEEDED, Decimal("10.00") * 2, "staff:alice", "review rejected"
    )
    assert refund.external_id.startswith("SBXR")
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count() == 3
    assert CardKey.objects.filter(pk__in=reserved, order_line__isnull=True).count() == 2
    events = list(order.events.order_by("at", "id").values_list("type", "actor", "data"))
    assert events[-3:] == [
        (OrderEventType.REFUND_REQUESTED, "staff:alice", {"reason": "review rejected"}),
        (OrderEventType.KEYS_RELEASED, "staff:alice", {"keys": 2}),
        (OrderEventType.REFUNDED, "staff:alice", {"refund": refund.pk, "amount": "20.00", "manual": False}),
    ]
    assert [(m.to, m.subject) for m in mailoutbox] == [
        (["buyer@example.com"], f"[Kamidrop] Order {order.order_no} refunded")
    ]
    assert "20.00 CNY" in mailoutbox[0].body and "on its way back" in mailoutbox[0].body
    refund.refresh_from_db()
    assert refund.buyer_notified_at is not None


def test_refund_of_an_order_awaiting_stock(make_product, make_unpaid_order, django_capture_on_commit_callbacks):
    # given
    order = _paid(make_unpaid_order(product=make_product(keys=0)), status=OrderStatus.AWAITING_STOCK)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        refund = payment_refund(order=order, actor="system", reason="no stock after 3 days")
    # then
    order.refresh_from_db()
    assert (order.status, refund.status) == (OrderStatus.REFUNDED, RefundStatus.SUCCEEDED)
    assert not order.events.filter(type=OrderEventType.KEYS_RELEASED).exists()
    assert len(callbacks) == 1  # the buyer's email, queued after commit


@pytest.mark.parametrize("status", [OrderStatus.FULFILLING, OrderStatus.DELIVERED])
def test_an_order_whose_keys_went_out_is_not_refunded(make_product, make_unpaid_order, status):
    # given
    order = _paid(make_unpaid_order(product=make_product(keys=2)), status=status)
    before = _state(order)
    # when
    with pytest.raises(OrderTransitionError) as refused:
        payment_refund(order=order, actor="staff:alice", reason="changed mind")
    # then
    assert refused.value.code == "ORDER_STATE_CONFLICT"
    assert _state(order) == before


def test_an_unpaid_order_has_nothing_to_refund(make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=2))
    before = _state(order)
    # when
    with pytest.raises(RefundError) as refused:
        payment_refund(order=order, actor="staff:alice", reason="?")
    # then
    assert refused.value.code == "PAYMENT_NOT_FOUND"
    assert _state(order) == before


def test_a_refunded_order_is_not_refunded_twice(make_product, make_unpaid_order):
    # given
    order = _paid(make_unpaid_order(product=make_product(keys=2)), status=OrderStatus.AWAITING_STOCK)
    payment_refund(order=order, actor="staff:alice", reason="first")
    before = _state(order)
    # when
    with pytest.raises(RefundError) as refused:
        payment_refund(order=order, actor="staff:bob", reason="second")
    # then
    assert refused.value.code == "PAYMENT_NOT_FOUND"  # the payment is REFUNDED now
    assert _state(order) == before


def test_epay_refund_is_recorded_and_the_owner_told_to_refund_by_hand(
    make_product, make_epay_order, django_capture_on_commit_callbacks, run_worker, mailoutbox
):
    # given
    order = _paid(make_epay_order(product=make_product(keys=2)), status=OrderStatus.AWAITING_STOCK, provider="epay")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        refund = payment_refund(order=order, actor="staff:alice", reason="no stock")
    run_worker()
    # then
    assert (refund.status, refund.external_id) == (RefundStatus.MANUAL, "")
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert order.events.get(type=OrderEventType.REFUNDED).data["manual"] is True
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.subject) == (AlertKind.PAYMENT_ODD, f"Refund order {order.order_no} by hand at epay")
    assert alert.body.startswith("EPay v1 has no refund API. Refund 10.00 CNY by hand in the EPay merchant panel: "
                                 f"merchant order {order.order_no}, gateway trade TRADE{order.pk}.")
    assert len(mailoutbox) == 1 and "payment service you used" in mailoutbox[0].body


def test_a_failed_provider_refund_is_alerted_and_can_be_retried(
    make_product, make_unpaid_order, settings, django_capture_on_commit_callbacks
):
    # given: the sandbox's refund endpoint is down
    providers = settings.PAYMENT_PROVIDERS
    settings.PAYMENT_PROVIDERS = {**providers, "sandbox": f"{__name__}.RefundRefusingSandbox"}
    order = _paid(make_unpaid_order(product=make_product(keys=3), quantity=2), status=OrderStatus.IN_REVIEW,
                  reserve=True)
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        failed = payment_refund(order=order, actor="staff:alice", reason="review rejected")
    # then: the order is taken back (nothing can deliver it), the money is not, the owner knows
    assert (failed.status, failed.error) == (RefundStatus.FAILED, "GATEWAY_DOWN: connection refused")
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert Payment.objects.get(order=order).status == PaymentStatus.SUCCEEDED
    assert CardKey.objects.filter(order_line__order=order).count() == 0
    assert not order.events.filter(type=OrderEventType.REFUNDED).exists()
    assert order.events.get(type=OrderEventType.PAYMENT_ODD).data == {
        "reason": "REFUND_FAILED", "code": "GATEWAY_DOWN", "refund": failed.pk,
    }
    assert OwnerAlert.objects.get().subject == f"Refund of order {order.order_no} failed (GATEWAY_DOWN)"
    assert len(callbacks) == 1  # the alert's email only; no buyer email
    # when: the gateway is back and staff retry
    settings.PAYMENT_PROVIDERS = providers
    retried = payment_refund(order=order, actor="staff:alice", reason="retry")
    # then
    assert retried.status == RefundStatus.SUCCEEDED
    assert Payment.objects.get(order=order).status == PaymentStatus.REFUNDED
    assert order.events.filter(type=OrderEventType.REFUNDED).count() == 1
    assert list(Refund.objects.order_by("id").values_list("status", flat=True)) == [
        RefundStatus.FAILED, RefundStatus.SUCCEEDED,
    ]


def test_admin_refund_action(admin_client, make_product, make_unpaid_order):
    # given
    order = _paid(make_unpaid_order(product=make_product(keys=2)), status=OrderStatus.AWAITING_STOCK)
    delivered = _paid(make_unpaid_order(product=make_product(keys=2)), status=OrderStatus.DELIVERED)
    # when
    response = admin_client.post(
        reverse("admin:shop_order_changelist"),
        {"action": "refund_orders", "_selected_action": [order.pk, delivered.pk]},
        follow=True,
    )
    # then
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    assert texts == [f"{order.order_no}: refund refunded.",
                     f"{delivered.order_no}: not refunded (ORDER_STATE_CONFLICT)."]
    order.refresh_from_db()
    delivered.refresh_from_db()
    assert (order.status, delivered.status) == (OrderStatus.REFUNDED, OrderStatus.DELIVERED)
    assert order.events.get(type=OrderEventType.REFUNDED).actor == "staff:admin"


def test_admin_refund_action_needs_the_refund_permission(client, make_product, make_unpaid_order):
    # given: staff who may view orders but not refund
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(staff)
    order = _paid(make_unpaid_order(product=make_product(keys=2)), status=OrderStatus.AWAITING_STOCK)
    before = _state(order)
    # when
    page = client.get(reverse("admin:shop_order_changelist"))
    response = client.post(reverse("admin:shop_order_changelist"),
                           {"action": "refund_orders", "_selected_action": [order.pk]})
    # then
    assert page.status_code == 200
    assert "refund_orders" not in page.content.decode()
    assert response.status_code in (200, 302)
    assert _state(order) == before
