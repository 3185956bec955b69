"""The owner's dashboard, the admin's home page: numbers and server-rendered SVG bars."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from delivery.alerts import owner_alert_raise, owner_alerts_acknowledge
from delivery.models import AlertKind
from inventory.models import CardKey, KeyPolicy
from shop.models import KeyReport, KeyReportStatus, Order
from shop.ops.dashboard import bars_layout

pytestmark = pytest.mark.django_db


def test_dashboard_shows_sales_statuses_latency_and_low_stock(admin_client, delivered_order, make_product,
                                                            make_unpaid_order):
    # given: one order delivered 4 s after payment, one unpaid, a product with no stock
    paid_at = timezone.now() - timedelta(minutes=5)
    Order.objects.filter(pk=delivered_order.pk).update(paid_at=paid_at, delivered_at=paid_at + timedelta(seconds=4))
    make_unpaid_order(product=make_product(name="Empty Card"))
    KeyPolicy.objects.update_or_create(product=delivered_order.lines.get().product, defaults={"low_stock_threshold": 0})
    # when
    response = admin_client.get("/admin/")
    page = response.content.decode()
    # then
    assert response.status_code == 200
    sales = re.search(r'<table id="kd-sales">.*?</table>', page, re.DOTALL).group(0)
    assert re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td><td>([\d.]+)</td></tr>", sales) == [
        ("today", "2", "1", "20.00"), ("7 days", "2", "1", "20.00"), ("30 days", "2", "1", "20.00"),
    ]
    assert '<span class="kd-big" id="kd-success">100.0%</span>' in page
    assert '<span id="kd-p50">4.0 s</span>' in page
    assert '<span class="kd-big" id="kd-review">0</span>' in page
    assert "<title>Delivered: 1</title>" in page
    assert "<title>Awaiting payment: 1</title>" in page
    assert '<rect class="kd-bar low"' in page and "<title>Empty Card: 0 — low</title>" in page


@pytest.mark.parametrize("url", ["/admin/", "/admin/dashboard/"])
def test_dashboard_is_for_staff_only(client, url):
    # when
    response = client.get(url)
    # then
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_old_dashboard_address_leads_to_the_home_page(admin_client):
    # when
    response = admin_client.get("/admin/dashboard/", follow=True)
    # then
    assert response.redirect_chain == [("/admin/", 302)]
    assert '<div id="kd-dashboard">' in response.content.decode()


def test_bars_scale_to_the_largest_value():
    # when
    bars = bars_layout(rows=[("a", 10, "10", False), ("b", 5, "5", True), ("c", 0, "0", False)])
    # then
    assert [(b.label, b.width, b.y, b.flag) for b in bars] == [("a", 360, 0, False), ("b", 180, 24, True), ("c", 0, 48, False)]


def test_dashboard_shows_open_key_reports_and_unacknowledged_alerts(admin_client, admin_user, delivered_order):
    # given: two open reports and one replaced, three alerts of which one is acknowledged
    key = CardKey.objects.filter(order_line__order=delivered_order).order_by("id").first()
    reports = [
        KeyReport.objects.create(order=delivered_order, card_key=key, reason=f"r{n}", status=status)
        for n, status in enumerate([KeyReportStatus.OPEN, KeyReportStatus.REPLACED, KeyReportStatus.OPEN])
    ]
    alerts = [owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key=f"d:{n}", subject=f"d{n}") for n in range(3)]
    owner_alerts_acknowledge(alert_ids=[alerts[0].pk], user=admin_user)
    # when
    page = admin_client.get("/admin/").content.decode()
    # then
    assert '<span class="kd-big" id="kd-key-reports">2</span>' in page
    latest = re.findall(r'<a href="/admin/shop/keyreport/(\d+)/change/">', page)
    assert latest == [str(reports[2].pk), str(reports[0].pk)]
    assert delivered_order.order_no in page
    assert '<span class="kd-big" id="kd-alerts">2</span>' in page
    assert '<a href="/admin/delivery/owneralert/?acknowledged=no">' in page
    assert key.secret not in page


def test_dashboard_charts_scale_to_their_card(admin_client):
    # when
    page = admin_client.get("/admin/").content.decode()
    # then: a viewBox, so CSS can shrink them
    assert re.search(r'<svg class="kd-svg" id="kd-stock-chart" viewBox="0 0 \d+ \d+"', page)
    assert re.search(r'<svg class="kd-svg" id="kd-status-chart" viewBox="0 0 \d+ \d+"', page)
