"""A buyer's key report tells the owner (an owner alert naming order and product, never the key)."""

import pytest

from delivery.models import AlertKind, OwnerAlert
from inventory.models import CardKey, CardKeyStatus
from shop.models import KeyReport, KeyReportStatus
from shop.services.buyer import KeyActionRefused, order_key_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(pay, make_product, make_unpaid_order):
    def make(**product_fields):
        product = make_product(keys=2, slug="gift", name="Gift Card 50", **product_fields)
        order = pay(make_unpaid_order(product=product))
        return order, CardKey.objects.get(order_line__order=order)

    return make


def test_a_report_waiting_for_staff_raises_a_key_report_alert(delivered, django_capture_on_commit_callbacks):
    # given
    order, key = delivered()
    # when
    with django_capture_on_commit_callbacks() as enqueued:
        report = order_key_report(order_id=order.pk, key_id=key.pk, reason=f"{key.secret} was rejected", ip=None)
    # then
    assert report.status == KeyReportStatus.OPEN
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key) == (AlertKind.KEY_REPORT, f"key-report:{report.pk}")
    assert alert.subject == f"Key reported on order {order.order_no} (Gift Card 50): waiting for staff"
    assert order.order_no in alert.body and "Gift Card 50" in alert.body
    assert f"/admin/shop/keyreport/{report.pk}/change/" in alert.body
    assert key.secret not in alert.subject + alert.body
    assert len(enqueued) == 1


def test_an_automatically_replaced_key_raises_an_alert_too(delivered):
    # given
    order, key = delivered(auto_replacements_per_order=1)
    # when
    report = order_key_report(order_id=order.pk, key_id=key.pk, reason="already used", ip=None)
    # then
    assert report.status == KeyReportStatus.REPLACED
    assert list(OwnerAlert.objects.values_list("kind", "subject")) == [
        (AlertKind.KEY_REPORT, f"Key reported on order {order.order_no} (Gift Card 50): replaced automatically"),
    ]
    new = CardKey.objects.get(order_line__order=order, status=CardKeyStatus.DELIVERED)
    assert all(secret not in alert.body for alert in OwnerAlert.objects.all() for secret in (key.secret, new.secret))


def test_a_refused_report_raises_no_alert(delivered):
    # given: the key was already reported
    order, key = delivered()
    order_key_report(order_id=order.pk, key_id=key.pk, reason="invalid", ip=None)
    # when
    with pytest.raises(KeyActionRefused):
        order_key_report(order_id=order.pk, key_id=key.pk, reason="invalid", ip=None)
    # then
    assert OwnerAlert.objects.count() == 1
    assert KeyReport.objects.count() == 1
