"""The owner manages payment methods in the admin: add, order, enable and
disable; credentials are write-only."""

import pytest

from payments.methods import ProviderUnknown, provider_get
from payments.models import PaymentMethod

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/payments/paymentmethod/add/"


def _form(**fields) -> dict:
    return {"code": "epay-wx", "provider": "epay", "channel": "wxpay", "enabled": "on", "position": "5",
            "name": "WeChat Pay", "name_zh": "微信支付", "icon": "wechat", "fee_percent": "0", "fee_fixed": "0",
            "gateway_url": "https://pay2.example.com/submit.php", "merchant_id": "2002", "query_before_credit": "on",
            "key": "SECOND-MERCHANT-KEY-7788", **fields}


def test_the_owner_adds_a_method_whose_key_is_never_shown_again(admin_client):
    # when
    response = admin_client.post(ADD_URL, _form())
    # then
    assert response.status_code == 302
    method = PaymentMethod.objects.get()
    assert provider_get("epay-wx").config.secret("key") == "SECOND-MERCHANT-KEY-7788"
    page = admin_client.get(f"/admin/payments/paymentmethod/{method.pk}/change/").content.decode()
    assert "SECOND-MERCHANT-KEY" not in page
    assert "Stored (set, ends …7788). Leave empty to keep it." in page
    listing = admin_client.get("/admin/payments/paymentmethod/").content.decode()
    assert "/payments/epay-wx/notify</td>" in listing  # the notify URL to give the provider


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"key": ""}, "key", "Required for this provider."),
    ({"channel": "f2f"}, "channel", "epay offers: (default), alipay, wxpay, qqpay"),
    ({"provider": "wechat", "channel": "native", "key": "", "apiv3_key": "short"}, "apiv3_key",
     "The APIv3 key is exactly 32 characters."),
    ({"provider": "alipay", "channel": "f2f", "private_key": "not a key", "public_key": "x"}, "private_key",
     "Not a usable RSA private key"),
])
def test_a_method_the_provider_could_not_use_is_refused_with_the_reason(admin_client, fields, field, message):
    response = admin_client.post(ADD_URL, _form(**fields))
    assert response.status_code == 200
    assert any(message in error for error in response.context["adminform"].form.errors[field])
    assert PaymentMethod.objects.count() == 0


def test_disabling_from_the_list_keeps_the_credentials_and_takes_the_method_off(admin_client):
    # given
    admin_client.post(ADD_URL, _form())
    method = PaymentMethod.objects.get()
    # when: unticked in the list (list_editable)
    response = admin_client.post("/admin/payments/paymentmethod/", {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(method.pk), "form-0-position": "3",
        "_save": "Save"})
    # then
    assert response.status_code == 302
    method.refresh_from_db()
    assert (method.enabled, method.position) == (False, 3)
    with pytest.raises(ProviderUnknown):
        provider_get("epay-wx")
    PaymentMethod.objects.filter(pk=method.pk).update(enabled=True)
    assert provider_get("epay-wx").config.secret("key") == "SECOND-MERCHANT-KEY-7788"
