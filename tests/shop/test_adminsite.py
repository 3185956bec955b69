"""The shop's admin site (shop/adminsite.py): its name in the header, models
grouped in owner's sections, the dashboard as the home page, in en and zh."""

import re
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from delivery.alerts import owner_alert_raise, owner_alerts_acknowledge
from delivery.models import AlertKind, Channel, Delivery, DeliveryStatus
from inventory.models import CardKey
from shop.adminsite import OPS, PLACES, SALES, ShopAdminSite, model_section
from shop.models import KeyReport, KeyReportStatus, Order, OrderStatus
from shop.ops.dashboard import sales_per_day

pytestmark = pytest.mark.django_db

OPS_ONLY = {
    ("shop", "orderevent"), ("shop", "orderline"), ("shop", "keyreveal"), ("payments", "paymentevent"),
    ("riskctl", "assessment"), ("riskctl", "riskevent"), ("inventory", "keyauditevent"), ("delivery", "sweeprun"),
    ("axes", "accessattempt"), ("axes", "accesslog"), ("axes", "accessfailurelog"),
}


def _app_list(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return admin.site.get_app_list(request)


def _key(model: dict) -> tuple[str, str]:
    return model["model"]._meta.app_label, model["model"]._meta.model_name


def test_admin_site_is_the_shops():
    assert isinstance(admin.site, ShopAdminSite)


def test_every_registered_model_is_in_exactly_one_section(admin_user):
    # when
    app_list = _app_list(admin_user)
    # then
    placed = Counter(_key(m) for section in app_list for m in section["models"] if "model" in m)
    registered = {(m._meta.app_label, m._meta.model_name) for m in admin.site._registry}
    assert set(placed) == registered
    assert [key for key, n in placed.items() if n != 1] == []


def test_sections_come_in_the_owners_order_with_ops_last_and_folded(admin_user):
    # when
    app_list = _app_list(admin_user)
    # then
    assert [s["section"] for s in app_list] == ["overview", "sales", "stock", "risk", "delivery", "settings", "ops"]
    assert [s["collapsed"] for s in app_list] == [False] * 6 + [True]
    sections = {s["section"]: {_key(m) for m in s["models"] if "model" in m} for s in app_list}
    assert OPS_ONLY <= sections["ops"]
    assert {("shop", "order"), ("shop", "product"), ("shop", "coupon"), ("shop", "category")} <= sections["sales"]
    assert {("inventory", "cardkey"), ("inventory", "importbatch"), ("inventory", "keypolicy")} <= sections["stock"]
    assert {("riskctl", "reviewitem"), ("riskctl", "rule"), ("riskctl", "listentry")} <= sections["risk"]
    assert {("delivery", "delivery"), ("delivery", "owneralert"), ("shop", "keyreport")} <= sections["delivery"]
    assert {("payments", "paymentmethod"), ("auth", "user"), ("auth", "group")} <= sections["settings"]
    assert [m["name"] for m in app_list[0]["models"]] == ["Dashboard"]
    assert app_list[0]["models"][0]["admin_url"] == "/admin/#kd-dashboard"


def test_models_no_one_placed_land_by_their_app():
    assert model_section(app_label="otp_totp", model_name="totpdevice") == OPS
    assert model_section(app_label="shop", model_name="somethingnew") == SALES
    assert all(section is not None for section, _ in PLACES.values())


def test_sections_show_only_what_the_user_may_see(django_user_model):
    # given: staff allowed to see orders only
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="clerk", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_order"))
    # when
    app_list = _app_list(django_user_model.objects.get(pk=user.pk))
    # then
    assert [(s["section"], [m["name"] for m in s["models"]]) for s in app_list] == [
        ("overview", ["Dashboard"]), ("sales", ["Orders"]),
    ]


def test_one_apps_page_still_lists_that_app(admin_client):
    # when
    response = admin_client.get("/admin/shop/")
    # then
    assert response.status_code == 200
    assert [app["app_label"] for app in response.context["app_list"]] == ["shop"]


def test_header_and_title_show_the_shop_name(admin_client, settings):
    # given
    settings.SHOP_NAME = "Lotus Cards"
    # when
    home = admin_client.get("/admin/").content.decode()
    orders = admin_client.get("/admin/shop/order/").content.decode()
    # then
    assert '<div id="site-name"><a href="/admin/">Lotus Cards</a></div>' in home
    assert "<title>Dashboard | Lotus Cards</title>" in home
    assert re.search(r"<title>[^<]+ \| Lotus Cards</title>", orders)
    assert '<div id="site-name"><a href="/admin/">Lotus Cards</a></div>' in orders
    assert "Django administration" not in home + orders
    assert "Django site admin" not in home + orders


def test_sidebar_lists_the_sections(admin_client):
    # when
    page = admin_client.get("/admin/shop/order/").content.decode()
    # then
    sidebar = re.search(r'<nav class="sticky" id="nav-sidebar".*?</nav>', page, re.DOTALL).group(0)
    captions = re.findall(r'<a href="/admin/#kd-section-\w+" class="section"[^>]*>([^<]+)</a>', sidebar)
    assert captions == ["Overview", "Sales", "Stock", "Risk", "Delivery", "Settings", "Advanced (ops)"]
    assert '<a href="/admin/#kd-dashboard">Dashboard</a>' in sidebar
    assert 'aria-current="page">Orders</a>' in sidebar


def test_home_page_lists_the_sections_with_ops_folded(admin_client):
    # when
    page = admin_client.get("/admin/").content.decode()
    # then
    sections = re.search(r'<div id="kd-sections">.*?<div class="module" id="recent-actions-module">', page,
                         re.DOTALL).group(0)
    assert re.findall(r"<(?:caption|summary)>([^<]+)</(?:caption|summary)>", sections) == [
        "Overview", "Sales", "Stock", "Risk", "Delivery", "Settings", "Advanced (ops)",
    ]
    folded = re.search(r'<details class="kd-section-fold" id="kd-section-ops">.*?</details>', sections, re.DOTALL)
    assert folded and "Raw payment notices" in folded.group(0) and "Orders" not in folded.group(0)


def test_home_page_in_chinese(admin_client):
    # given
    admin_client.cookies["django_language"] = "zh-hans"
    # when
    page = admin_client.get("/admin/").content.decode()
    # then
    assert '<html lang="zh-hans"' in page
    for text in ["<caption>销售</caption>", "<caption>库存</caption>", "<caption>风控</caption>",
                 "<caption>发货</caption>", "<caption>设置</caption>", "待处理", "审核中的订单", "各状态订单数",
                 "<title>仪表盘 | Kamidrop</title>"]:
        assert text in page, text


def test_language_switch_posts_to_set_language(admin_client):
    # given
    page = admin_client.get("/admin/shop/order/").content.decode()
    form = re.search(r'<form id="kd-language" method="post" action="([^"]+)">.*?</form>', page, re.DOTALL)
    assert form.group(1) == "/i18n/setlang/"
    assert '<input type="hidden" name="next" value="/admin/shop/order/">' in form.group(0)
    assert '<button type="submit" name="language" value="zh-hans" lang="zh-hans">简体中文</button>' in form.group(0)
    # when
    response = admin_client.post(form.group(1), {"language": "zh-hans", "next": "/admin/shop/order/"})
    # then
    assert response.status_code == 302 and response["Location"] == "/admin/shop/order/"
    assert '<html lang="zh-hans"' in admin_client.get("/admin/shop/order/").content.decode()


def _action_counts(page: str) -> dict[str, tuple[str, int]]:
    tiles = re.findall(r'<li id="kd-action-([-\w]+)"[^>]*><a href="([^"]+)"><span class="kd-big" id="kd-[-\w]+">'
                       r"(\d+)</span>", page)
    return {key: (url.replace("&amp;", "&"), int(n)) for key, url, n in tiles}


def test_needing_action_counts_link_to_lists_with_those_rows(admin_client, admin_user, make_product,
                                                            make_unpaid_order, pay):
    # given: two orders in review, one waiting for stock, one failed delivery, an open and a replaced
    # key report, two alerts of which one is acknowledged, and a product out of stock
    product = make_product(keys=10)
    orders = [pay(make_unpaid_order(product=product)) for _ in range(5)]
    Order.objects.filter(pk__in=[orders[0].pk, orders[1].pk]).update(status=OrderStatus.IN_REVIEW)
    Order.objects.filter(pk=orders[2].pk).update(status=OrderStatus.AWAITING_STOCK)
    Order.objects.filter(pk=orders[4].pk).update(status=OrderStatus.PREPARING)  # a manual order to prepare
    Delivery.objects.filter(order=orders[3], channel=Channel.EMAIL).update(status=DeliveryStatus.FAILED)
    key = CardKey.objects.filter(order_line__order=orders[3]).first()
    KeyReport.objects.create(order=orders[3], card_key=key, reason="dead", status=KeyReportStatus.OPEN)
    KeyReport.objects.create(order=orders[3], card_key=key, reason="old", status=KeyReportStatus.REPLACED)
    alerts = [owner_alert_raise(kind=AlertKind.DISPUTE, dedupe_key=f"d:{n}", subject=f"d{n}") for n in range(2)]
    owner_alerts_acknowledge(alert_ids=[alerts[0].pk], user=admin_user)
    make_product(name="Empty Card")
    # when
    counts = _action_counts(admin_client.get("/admin/").content.decode())
    # then
    assert counts == {
        "in-review": ("/admin/shop/order/?status__exact=IN_REVIEW", 2),
        "awaiting-stock": ("/admin/shop/order/?status__exact=AWAITING_STOCK", 1),
        "manual-queue": ("/admin/shop/manualqueueorder/", 1),
        "dead-letter": ("/admin/delivery/delivery/?status__exact=FAILED", 1),
        "open-reports": ("/admin/shop/keyreport/?status__exact=OPEN", 1),
        "alerts": ("/admin/delivery/owneralert/?acknowledged=no", 1),
        "low-stock": ("#kd-stock", 1),
    }
    for key, (url, n) in counts.items():
        if url.startswith("/"):
            listed = admin_client.get(url)
            assert listed.status_code == 200, key  # an unknown filter would redirect to ?e=1
            assert listed.context["cl"].result_count == n, key


def test_needing_action_counts_are_zero_in_an_empty_shop(admin_client):
    # when
    counts = _action_counts(admin_client.get("/admin/").content.decode())
    # then
    assert {key: n for key, (_, n) in counts.items()} == {
        "in-review": 0, "awaiting-stock": 0, "manual-queue": 0, "dead-letter": 0, "open-reports": 0, "alerts": 0, "low-stock": 0,
    }


def test_sales_per_day_counts_days_in_the_shops_time_zone(make_product, make_unpaid_order, pay, settings):
    # given: "now" is 10:00 in Shanghai; one order paid 23:30 the evening before, one at 00:30 today
    # (both the same UTC day), a refunded one today, one 20 days ago
    settings.TIME_ZONE = "Asia/Shanghai"
    shanghai = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 3, 10, 10, 0, tzinfo=shanghai)
    product = make_product(keys=10, price="12.50")
    orders = [pay(make_unpaid_order(product=product)) for _ in range(4)]
    paid_at = [datetime(2026, 3, 9, 23, 30, tzinfo=shanghai), datetime(2026, 3, 10, 0, 30, tzinfo=shanghai),
               datetime(2026, 3, 10, 8, 0, tzinfo=shanghai), now - timedelta(days=20)]
    for order, at in zip(orders, paid_at, strict=True):
        Order.objects.filter(pk=order.pk).update(paid_at=at)
    Order.objects.filter(pk=orders[2].pk).update(status=OrderStatus.REFUNDED)
    # when
    days = sales_per_day(now=now)
    # then
    assert len(days) == 14
    assert days[0]["day"] == datetime(2026, 2, 25).date() and days[-1]["day"] == datetime(2026, 3, 10).date()
    assert (days[-2]["orders"], days[-2]["amount"]) == (1, Decimal("12.50"))
    assert (days[-1]["orders"], days[-1]["amount"]) == (2, Decimal("12.50"))
    assert sum(row["orders"] for row in days) == 3


def test_home_page_draws_sales_per_day(admin_client, make_product, make_unpaid_order, pay):
    # given: one order paid now
    pay(make_unpaid_order(product=make_product(keys=1, price="20.00")))
    # when
    page = admin_client.get("/admin/").content.decode()
    # then
    chart = re.search(r'<svg class="kd-svg" id="kd-days-chart" viewBox="0 0 \d+ \d+".*?</svg>', page, re.DOTALL)
    titles = re.findall(r"<title>([^<]+)</title>", chart.group(0))
    today = timezone.localdate().isoformat()
    assert len(titles) == 14
    assert titles[-1] == f"{today}: 1 order, 20.00"
    assert all(title.endswith(": 0 orders, 0") for title in titles[:-1])
    assert "1 order paid, revenue 20.00" in page
