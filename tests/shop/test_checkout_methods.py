"""The web checkout offers the enabled payment methods; an unpaid order can
still be paid (Pay now); the shop's own pay page for QR codes and forms."""

from decimal import Decimal

import pytest
from django.utils import timezone

from payments.models import Payment, PaymentMethod
from payments.services.methods import payment_method_save
from shop.models import Order, OrderStatus
from tests.fakes.epay import FakeEpay, epay_submit_params
from tests.payments.conftest import EPAY_NOTIFY_URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway(epay):
    """EPay on, the sandbox off: a production shop."""
    fake = FakeEpay(pid="1001", key="TESTKEY123")
    epay.EPAY_GATEWAY = fake.submit_url
    epay.EPAY_TYPE = "alipay"
    epay.SANDBOX_ENABLED = False
    yield fake
    fake.close()


def _second_merchant(**fields) -> PaymentMethod:
    defaults = {"code": "epay-wx", "provider": "epay", "channel": "wxpay", "name": "WeChat Pay", "name_zh": "微信支付",
                "icon": "wechat", "merchant_id": "2002", "gateway_url": "https://pay2.example.com/submit.php",
                "position": 20}
    return payment_method_save(method=PaymentMethod(**{**defaults, **fields}), credentials={"key": "SECONDKEY"})


def _buy(client, product, **fields):
    return client.post(f"/p/{product.slug}/", {"quantity": "1", "email": "a@example.com", "terms": "on", "buy": "1",
                                               **fields})


def test_the_product_page_offers_each_enabled_method_with_its_icon_in_the_buyers_language(
        client, gateway, make_product):
    # given
    product = make_product(keys=2)
    _second_merchant()
    # when
    en = client.get(f"/p/{product.slug}/").content.decode()
    zh = client.get(f"/p/{product.slug}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # then
    assert 'name="method" value="epay" checked' in en
    assert 'name="method" value="epay-wx"' in en
    assert "/static/payments/icons/wechat" in en and "/static/payments/icons/alipay" in en
    assert ">Alipay</span>" in en and ">WeChat Pay</span>" in en
    assert ">支付宝</span>" in zh and ">微信支付</span>" in zh
    assert 'value="sandbox"' not in en


def test_with_one_method_the_buyer_is_not_asked_to_choose(client, gateway, make_product):
    # given
    product = make_product(keys=2)
    # when
    page = client.get(f"/p/{product.slug}/").content.decode()
    response = _buy(client, product)
    # then: no choice on the page, and buying goes straight to the gateway
    assert 'type="radio"' not in page
    assert '<input type="hidden" name="method" value="epay">' in page
    assert response.status_code == 302
    assert response["Location"].startswith(gateway.submit_url + "?")


def test_the_buyer_is_handed_to_the_gateway_of_the_method_they_picked(client, gateway, make_product):
    # given
    product = make_product(keys=2, price="10.00")
    _second_merchant(fee_percent=Decimal("2"))
    # when
    response = _buy(client, product, method="epay-wx")
    # then: the second merchant's gateway, its pid, its fee
    assert response.status_code == 302
    assert response["Location"].startswith("https://pay2.example.com/submit.php?")
    params = epay_submit_params(response["Location"])
    order = Order.objects.get()
    assert (params["pid"], params["type"], params["money"]) == ("2002", "wxpay", "10.20")
    assert params["notify_url"] == "https://shop.example.com/payments/epay-wx/notify"
    payment = Payment.objects.get(order=order)
    assert (payment.provider, payment.amount, order.amount) == ("epay-wx", Decimal("10.20"), Decimal("10.00"))


def test_a_method_outside_its_limits_is_neither_offered_nor_taken(client, gateway, make_product):
    # given: WeChat for orders of 100 or more only
    product = make_product(keys=2, price="10.00")
    _second_merchant(min_amount=Decimal("100.00"))
    # when
    page = client.get(f"/p/{product.slug}/").content.decode()
    response = _buy(client, product, method="epay-wx")
    # then
    assert 'value="epay-wx"' not in page
    assert response.status_code == 400
    assert "PROVIDER_UNKNOWN" in response.content.decode()
    assert Order.objects.count() == 0


def test_with_no_method_the_page_says_so_and_offers_no_buy_button(client, make_product, settings):
    settings.SANDBOX_ENABLED = False
    product = make_product(keys=2)
    page = client.get(f"/p/{product.slug}/").content.decode()
    assert "NO_PAYMENT_METHOD" in page
    assert 'name="buy"' not in page


def test_an_unpaid_order_offers_pay_now_with_the_holds_countdown(client, gateway, make_product):
    # given: the buyer left the gateway without paying
    product = make_product(keys=2)
    _second_merchant()
    first = _buy(client, product, method="epay")
    order = Order.objects.get()
    # when
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    # then
    assert "Pay now with Alipay" in page and "Pay now with WeChat Pay" in page
    assert f'data-until="{timezone.localtime(order.hold_expires_at).isoformat()}' in page
    # when: Pay now with the same method: the same payment (one trade per merchant order)
    again = client.post(f"/orders/{order.order_no}/pay", {"method": "epay"})
    assert again["Location"] == first["Location"]
    # when: Pay now with the other method: a payment of its own
    other = client.post(f"/orders/{order.order_no}/pay", {"method": "epay-wx"})
    assert other["Location"].startswith("https://pay2.example.com/submit.php?")
    references = list(Payment.objects.filter(order=order).order_by("id").values_list("provider", "reference"))
    assert references[0] == ("epay", order.order_no)
    assert references[1][0] == "epay-wx" and references[1][1].startswith(order.order_no + "-")


def test_paying_through_pay_now_pays_the_order_and_pay_now_goes_away(client, gateway, make_product,
                                                                      django_capture_on_commit_callbacks):
    # given: the second payment (Pay now) is the one the buyer completes
    product = make_product(keys=2)
    _buy(client, product)
    order = Order.objects.get()
    Payment.objects.filter(order=order).update(pay_action={})  # the first page was lost: a new one is opened
    client.post(f"/orders/{order.order_no}/pay", {"method": "epay"})
    payment = Payment.objects.filter(order=order).latest("id")
    assert payment.reference.startswith(order.order_no + "-")  # a fresh trade, not a retry of the lost one
    notice = gateway.pay(payment.reference, money=f"{payment.amount:.2f}")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(EPAY_NOTIFY_URL, notice).content == b"success"
    # then
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLING
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    assert "Pay now" not in page
    assert client.post(f"/orders/{order.order_no}/pay", {"method": "epay"})["Location"] == f"/orders/{order.order_no}/"


def test_the_pay_page_shows_a_qr_code_rendered_here_the_amount_and_moves_on_when_paid(
        client, gateway, make_product, pay):
    # given: a payment whose provider wants a QR code shown (as 当面付 does)
    product = make_product(keys=2, price="12.34")
    _buy(client, product)
    order = Order.objects.get()
    payment = Payment.objects.get(order=order)
    Payment.objects.filter(pk=payment.pk).update(pay_action={
        "kind": "QR", "qr": "https://qr.alipay.com/bax01234", "app_url": "https://qr.alipay.com/bax01234"})
    # when
    page = client.get(f"/payments/pay/{payment.reference}/")
    status = client.get(f"/payments/pay/{payment.reference}/status").json()
    # then
    html = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in html and '<p class="amount" id="pay-amount">12.34 CNY</p>' in html
    assert 'href="https://qr.alipay.com/bax01234"' in html
    assert 'class="countdown"' in html
    assert page["Cache-Control"].startswith("max-age=0")
    assert status == {"paid": False}
    # when: paid
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.FULFILLING, paid_at=timezone.now())
    # then
    assert client.get(f"/payments/pay/{payment.reference}/status").json() == {"paid": True}
    assert client.get(f"/payments/pay/{payment.reference}/")["Location"] == f"/orders/{order.order_no}/"


def test_the_pay_page_posts_a_gateways_form_by_itself(client, gateway, make_product):
    product = make_product(keys=2)
    _buy(client, product)
    payment = Payment.objects.get()
    Payment.objects.filter(pk=payment.pk).update(pay_action={
        "kind": "FORM", "url": "https://openapi.alipay.com/gateway.do?charset=utf-8",
        "fields": {"app_id": "2021", "biz_content": '{"out_trade_no":"x"}', "sign": "abc"}})
    html = client.get(f"/payments/pay/{payment.reference}/").content.decode()
    assert '<form method="post" action="https://openapi.alipay.com/gateway.do?charset=utf-8" id="gateway-form"' in html
    assert '<input type="hidden" name="biz_content" value="{&quot;out_trade_no&quot;:&quot;x&quot;}">' in html
