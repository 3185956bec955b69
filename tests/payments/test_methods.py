"""Payment methods as data: admin rows beside the environment's, sealed
credentials, what checkout offers, fees, and key rotation."""

import base64
import os
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from inventory import sealing
from payments.methods import MethodConfig, ProviderUnknown, methods_offered, provider_get
from payments.models import PaymentMethod
from payments.services.methods import credentials_masked, payment_method_save

pytestmark = pytest.mark.django_db


def _epay_row(code="epay-wx", *, key="MERCHANTKEY-9876", **fields) -> PaymentMethod:
    method = PaymentMethod(code=code, provider="epay", channel=fields.pop("channel", "wxpay"),
                           name=fields.pop("name", "WeChat Pay"), name_zh=fields.pop("name_zh", "微信支付"),
                           gateway_url=fields.pop("gateway_url", "https://pay2.example.com/submit.php"),
                           merchant_id=fields.pop("merchant_id", "2002"), **fields)
    return payment_method_save(method=method, credentials={"key": key})


def test_credentials_are_sealed_at_rest_and_only_their_tail_is_shown():
    # when
    method = _epay_row()
    # then
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials_sealed FROM payments_paymentmethod WHERE id = %s", [method.pk])
        raw = bytes(cursor.fetchone()[0])
    assert b"MERCHANTKEY" not in raw
    assert credentials_masked(method=method) == {"key": "set, ends …9876"}
    assert provider_get("epay-wx").config.secret("key") == "MERCHANTKEY-9876"


def test_an_empty_credential_keeps_the_stored_one_and_a_new_one_replaces_it():
    # given
    method = _epay_row()
    # when: saved again without a key, then with a new one
    payment_method_save(method=method, credentials={"key": ""})
    kept = provider_get("epay-wx").config.secret("key")
    payment_method_save(method=method, credentials={"key": "NEWKEY-1111"})
    # then
    assert (kept, provider_get("epay-wx").config.secret("key")) == ("MERCHANTKEY-9876", "NEWKEY-1111")


def test_sealed_credentials_do_not_open_under_another_methods_code():
    # given: one method's sealed credentials copied onto another row
    first = _epay_row("epay-a")
    second = _epay_row("epay-b", key="OTHER-KEY-2222")
    PaymentMethod.objects.filter(pk=second.pk).update(credentials_sealed=first.credentials_sealed)
    # when / then: that method is off (its credentials do not open); the others work on
    with pytest.raises(sealing.SealError):
        sealing.blob_open(bytes(first.credentials_sealed), aad=b"kamidrop-payment-method:epay-b")
    with pytest.raises(ProviderUnknown):
        provider_get("epay-b")
    assert provider_get("epay-a").config.secret("key") == "MERCHANTKEY-9876"


def test_two_epay_merchants_live_side_by_side_with_their_own_keys_and_notify_urls(epay):
    # given: the environment's EPay merchant and one added in the admin
    _epay_row("epay-wx", merchant_id="2002", key="SECOND-MERCHANT-KEY")
    # when
    env, admin = provider_get("epay"), provider_get("epay-wx")
    # then
    assert (env.config.merchant_id, env.config.secret("key")) == ("1001", "TESTKEY123")
    assert (admin.config.merchant_id, admin.config.secret("key")) == ("2002", "SECOND-MERCHANT-KEY")
    assert admin.notify_url() == "https://shop.example.com/payments/epay-wx/notify"
    assert env.notify_url() == "https://shop.example.com/payments/epay/notify"


def test_checkout_offers_enabled_methods_in_order_within_their_limits_and_products(make_product, settings):
    # given
    settings.SANDBOX_ENABLED = False
    vip, other = make_product(keys=1, price="50.00"), make_product(keys=1, price="5.00")
    _epay_row("epay-wx", position=2)
    _epay_row("epay-ali", channel="alipay", name="Alipay", position=1, min_amount=Decimal("10.00"))
    _epay_row("epay-qq", channel="qqpay", name="QQ", position=0, enabled=False)
    only_vip = _epay_row("epay-vip", position=3)
    only_vip.products.set([vip])
    # when
    for_vip = [m.id for m in methods_offered(product_id=vip.pk, amount=Decimal("50.00"))]
    for_other = [m.id for m in methods_offered(product_id=other.pk, amount=Decimal("5.00"))]
    # then
    assert for_vip == ["epay-ali", "epay-wx", "epay-vip"]
    assert for_other == ["epay-wx"]
    with pytest.raises(ProviderUnknown):
        provider_get("epay-qq")


def test_the_sandbox_is_offered_only_where_it_is_enabled(make_product, settings):
    product = make_product(keys=1)
    settings.SANDBOX_ENABLED = True
    assert [m.id for m in methods_offered(product_id=product.pk, amount=product.price)] == ["sandbox"]
    settings.SANDBOX_ENABLED = False
    assert methods_offered(product_id=product.pk, amount=product.price) == []


@pytest.mark.parametrize(("percent", "fixed", "amount", "payable", "text"), [
    ("0", "0", "10.00", "10.00", ""),
    ("2", "0", "10.00", "10.20", "+2%"),
    ("-5", "0", "19.99", "18.99", "−5%"),
    ("1.5", "0.30", "10.00", "10.45", "+1.5% +0.30"),
    ("0", "-20", "10.00", "0.01", "−20.00"),
])
def test_a_methods_fee_or_discount_sets_what_the_buyer_pays(percent, fixed, amount, payable, text):
    config = MethodConfig(id="m", provider="epay", fee_percent=Decimal(percent), fee_fixed=Decimal(fixed))
    assert (config.amount_for(Decimal(amount)), config.fee_text) == (Decimal(payable), text)


def test_rotate_keys_reseals_payment_method_credentials(settings):
    # given: a method sealed under the old key
    _epay_row("epay-wx")
    old = settings.KEY_ENCRYPTION_KEYS[0]
    new = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings.KEY_ENCRYPTION_KEYS = [new, old]
    # when
    out = StringIO()
    call_command("rotate_keys", stdout=out)
    # then: it opens with the new key alone
    assert "1 payment methods' credentials re-sealed under the primary key" in out.getvalue()
    settings.KEY_ENCRYPTION_KEYS = [new]
    assert provider_get("epay-wx").config.secret("key") == "MERCHANTKEY-9876"
