"""Buyer pages in English and Chinese; catalogue by category; FAQ."""

import pytest
from django.template.loader import render_to_string

from shop.models import Category, Order

pytestmark = pytest.mark.django_db


def test_catalogue_groups_by_category_with_stock_state(client, make_product):
    # given
    games = Category.objects.create(slug="games", name="Game cards", name_zh="游戏点卡", position=1)
    soft = Category.objects.create(slug="soft", name="Software", position=0)
    make_product(keys=2, name="Steam 100", category=games)
    make_product(keys=0, name="Office", category=soft)
    # when
    page = client.get("/").content.decode()
    # then: categories in their order (the chips, then the cards), each with its products and stock
    assert page.index("Software") < page.index("Game cards")
    page = page[page.index('<ul class="pcards"'):]
    assert page.index("Office") < page.index("Steam 100")
    assert "2 in stock" in page and "Sold out" in page


def test_accept_language_chinese_gives_chinese_pages_names_and_money(client, make_product):
    # given
    make_product(keys=1, name="Steam 100", name_zh="Steam 充值卡 100", price="100.00",
                 description="A card.", description_zh="一张卡。", slug="steam")
    # when
    catalogue = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    product = client.get("/p/steam/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    english = client.get("/p/steam/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    # then
    assert '<html lang="zh-Hans">' in catalogue
    assert "虚拟商品，秒级自动发货" in catalogue and "Steam 充值卡 100" in catalogue and "100.00 元" in catalogue
    assert "一张卡。" in product and "立即购买" in product and "查询密码" in product
    assert "Steam 100" in english and "A card." in english and "Buy now" in english and "100.00 CNY" in english


def test_language_switch_sticks_for_the_next_pages(client):
    # given
    # when
    switched = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/faq/"})
    faq = client.get("/faq/").content.decode()
    lookup = client.get("/lookup/").content.decode()
    # then
    assert (switched.status_code, switched["Location"]) == (302, "/faq/")
    assert "常见问题" in faq and "查询订单" in lookup and "通过邮件发送链接" in lookup


def test_key_email_and_sms_follow_the_buyers_language(make_unpaid_order, make_product):
    # given
    product = make_product(keys=1, name="Gift", name_zh="礼品卡")
    order = make_unpaid_order(product=product)
    Order.objects.filter(pk=order.pk).update(language="zh-hans")
    order.refresh_from_db()
    keys = [type("Key", (), {"product": product, "secret": "K-1"})()]
    # when
    context = {"order": order, "keys": keys, "shop_name": "Kamidrop"}
    subject = render_to_string("delivery/email_keys_subject.txt", context).strip()
    text = render_to_string("delivery/email_keys.txt", context)
    sms = render_to_string("delivery/sms_keys.txt", context).strip()
    english = render_to_string("delivery/email_keys.txt", {**context, "order": make_unpaid_order(product=product)})
    # then
    assert subject == f"Kamidrop：订单 {order.order_no} 的卡密"
    assert text.startswith(f"感谢您的订单 {order.order_no}。") and "礼品卡: K-1" in text
    assert sms.startswith(f"Kamidrop 订单 {order.order_no}： K-1 ")
    assert english.startswith("Thank you for your order ") and "Gift: K-1" in english


def test_order_timeline_dates_are_localised(client, make_product):
    # given
    from shop.access import SESSION_ORDERS
    from shop.services import checkout_place_order

    product = make_product(keys=1)
    placed = checkout_place_order(product_slug=product.slug, quantity=1, email="a@example.com")
    session = client.session
    session[SESSION_ORDERS] = [placed.order.order_no]
    session.save()
    event = placed.order.events.get()
    # when
    zh = client.get(f"/orders/{placed.order.order_no}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # then
    from django.utils import timezone
    local = timezone.localtime(event.at)
    assert f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}" in zh and "订单已创建" in zh
