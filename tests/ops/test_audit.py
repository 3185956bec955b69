"""manage.py audit: every invariant of DESIGN.md, each violation written straight into the DB."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus, OwnerAlert
from inventory.models import CardKey, CardKeyStatus
from inventory.services import keys_import
from payments.models import Payment, PaymentEvent, PaymentEventOutcome, PaymentStatus
from shop.models import Order, OrderEvent, OrderStatus

pytestmark = pytest.mark.django_db


def run_audit() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("audit", stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def violated_rows(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if "VIOLATED" in line]


def test_audit_is_clean_after_a_delivered_order(delivered_order):
    # given
    assert delivered_order.status == OrderStatus.DELIVERED
    # when
    code, output = run_audit()
    # then
    assert code == 0, output
    assert output.count(" OK ") == 8
    assert "all invariants hold" in output


def test_audit_flags_a_line_with_more_keys_than_its_quantity(delivered_order):
    # given: a third key slipped onto a line of quantity 2
    line = delivered_order.lines.get()
    spare = CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).first()
    CardKey.objects.filter(pk=spare.pk).update(status=CardKeyStatus.DELIVERED, order_line=line)
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["1", "2"]
    assert f"line:{line.pk}" in output


def test_audit_flags_the_same_key_sold_on_two_lines(delivered_order, make_product, make_unpaid_order):
    # given: another product imported the same key, and it was sold too
    sold = CardKey.objects.filter(order_line__order=delivered_order).order_by("id").first()
    other = make_product(slug="other")
    keys_import(product=other, source="test", entries=[(1, sold.secret)])
    twin = CardKey.objects.get(product=other)
    order = make_unpaid_order(product=other)
    CardKey.objects.filter(pk=twin.pk).update(status=CardKeyStatus.RESERVED, order_line=order.lines.get())
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert "1" in violated_rows(output)
    assert f"key:{sold.pk} key:{twin.pk}" in output


def test_audit_flags_a_delivered_order_missing_a_key(delivered_order):
    # given
    key = CardKey.objects.filter(order_line__order=delivered_order).order_by("id").first()
    CardKey.objects.filter(pk=key.pk).update(status=CardKeyStatus.AVAILABLE, order_line=None)
    line = delivered_order.lines.get()
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["2"]
    assert f"line:{line.pk}" in output


def test_audit_accepts_an_order_awaiting_stock_without_keys(make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product())
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.AWAITING_STOCK, paid_at=timezone.now())
    # when
    code, output = run_audit()
    # then
    assert code == 0, output


def test_audit_flags_a_fulfilling_order_without_its_email_delivery(delivered_order):
    # given
    Order.objects.filter(pk=delivered_order.pk).update(status=OrderStatus.FULFILLING)
    email = Delivery.objects.get(order=delivered_order, channel=Channel.EMAIL)
    email.attempt_log.all().delete()
    email.delete()
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["3"]
    assert f"order:{delivered_order.pk}" in output


def test_audit_flags_a_failed_delivery_nobody_was_told_about(delivered_order):
    # given
    Order.objects.filter(pk=delivered_order.pk).update(status=OrderStatus.FULFILLING)
    email = Delivery.objects.get(order=delivered_order, channel=Channel.EMAIL)
    Delivery.objects.filter(pk=email.pk).update(status=DeliveryStatus.FAILED)
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert f"delivery:{email.pk}" in output
    # and with the dead-letter alert it is fine
    OwnerAlert.objects.create(kind=AlertKind.DEAD_LETTER, dedupe_key="dead-letter:EMAIL", subject="failed")
    assert run_audit()[0] == 0


def test_audit_flags_an_old_pending_delivery_without_a_job(delivered_order, settings):
    # given: pending for an hour, no job in Redis (the sweeper should have re-created it)
    Order.objects.filter(pk=delivered_order.pk).update(status=OrderStatus.FULFILLING)
    email = Delivery.objects.get(order=delivered_order, channel=Channel.EMAIL)
    Delivery.objects.filter(pk=email.pk).update(
        status=DeliveryStatus.PENDING, sent_at=None, created_at=timezone.now() - timedelta(hours=1)
    )
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["3"]
    assert f"delivery:{email.pk}" in output


def test_audit_accepts_a_young_pending_delivery(delivered_order):
    # given: just written, its job not enqueued yet: the sweeper will re-create it if lost
    Order.objects.filter(pk=delivered_order.pk).update(status=OrderStatus.FULFILLING)
    Delivery.objects.filter(order=delivered_order, channel=Channel.EMAIL).update(
        status=DeliveryStatus.PENDING, sent_at=None
    )
    # when
    code, output = run_audit()
    # then
    assert code == 0, output


def test_audit_flags_an_accepted_notice_with_a_wrong_amount(delivered_order):
    # given
    event = PaymentEvent.objects.get(outcome=PaymentEventOutcome.ACCEPTED)
    PaymentEvent.objects.filter(pk=event.pk).update(amount="0.01")
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["4"]
    assert f"event:{event.pk}" in output


def test_audit_flags_a_payment_accepted_twice(delivered_order):
    # given: a second notice id applied to the same payment
    event = PaymentEvent.objects.get(outcome=PaymentEventOutcome.ACCEPTED)
    PaymentEvent.objects.create(
        provider=event.provider, external_id="DUP-1", reference=event.reference, payment=event.payment,
        amount=event.amount, currency=event.currency, outcome=PaymentEventOutcome.ACCEPTED,
    )
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert f"payment:{event.payment_id}" in output


def test_audit_flags_an_order_with_two_succeeded_payments(delivered_order):
    # given
    Payment.objects.create(
        order=delivered_order, provider="sandbox", reference="SECOND-1", status=PaymentStatus.SUCCEEDED,
        amount=delivered_order.amount, currency=delivered_order.currency, external_id="X-2",
    )
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert "4" in violated_rows(output)
    assert f"order:{delivered_order.pk}" in output


def test_audit_flags_a_successful_payment_whose_order_is_unpaid(make_product, make_unpaid_order):
    # given: the notice was accepted but the order never moved (money lost)
    order = make_unpaid_order(product=make_product())
    payment = order.payments.get()
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.SUCCEEDED, external_id="T-1")
    event = PaymentEvent.objects.create(
        provider="sandbox", external_id="T-1", reference=order.order_no, payment=payment,
        amount=order.amount, currency=order.currency, outcome=PaymentEventOutcome.ACCEPTED,
    )
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["5"]
    assert f"event:{event.pk}" in output and f"payment:{payment.pk}" in output


def test_audit_flags_a_key_stored_unsealed(delivered_order):
    # given
    key = CardKey.objects.filter(order_line__order=delivered_order).order_by("id").first()
    CardKey.objects.filter(pk=key.pk).update(secret_sealed=b"GIFT-KEY-00000-in-clear")
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["6"]
    assert f"key:{key.pk}" in output


def test_audit_flags_a_delivered_key_copied_into_a_text_column(delivered_order):
    # given: someone pasted the key into an order event
    key = CardKey.objects.filter(order_line__order=delivered_order).order_by("id").first()
    event = OrderEvent.objects.create(order=delivered_order, type="PAID", actor="staff", data={"note": key.secret})
    alert = OwnerAlert.objects.create(kind=AlertKind.LOW_STOCK, dedupe_key="x", subject="s", body=f"key {key.secret}!")
    # when
    code, output = run_audit()
    # then
    assert code == 1
    assert violated_rows(output) == ["6"]
    assert f"shop_orderevent.data:{event.pk}" in output
    assert f"delivery_owneralert.body:{alert.pk}" in output
