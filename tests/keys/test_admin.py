"""Admin: merchant API keys (token shown once, only its hash stored, revoke)
and reverting a redemption with a reason."""

import hashlib
import re

import pytest

from inventory.apikeys import merchant_api_key_authenticate
from inventory.models import KeyAuditEvent, KeyRedemption, MerchantApiKey
from inventory.redemption import key_redeem

pytestmark = pytest.mark.django_db

KEYS_URL = "/admin/inventory/merchantapikey/"
REDEMPTIONS_URL = "/admin/inventory/keyredemption/"


def test_creating_an_api_key_shows_the_token_once_and_stores_its_hash(admin_client, make_product):
    # given
    product = make_product()
    # when
    response = admin_client.post(f"{KEYS_URL}add/", {"name": "game server", "products": [product.pk]})
    # then
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"].split(", ")
    token = re.search(r'id="merchant-api-token"[^>]*>(kd_[^<]+)<', response.content.decode())[1]
    api_key = MerchantApiKey.objects.get()
    assert (api_key.name, list(api_key.products.all())) == ("game server", [product])
    assert api_key.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert merchant_api_key_authenticate(token=token) == api_key
    page = admin_client.get(f"{KEYS_URL}{api_key.pk}/change/").content.decode()
    assert token not in page and token not in admin_client.get(KEYS_URL).content.decode()


def test_revoke_action(admin_client, make_product, merchant):
    # given
    api_key, _ = merchant(make_product())
    # when
    admin_client.post(KEYS_URL, {"action": "revoke_keys", "_selected_action": [api_key.pk]})
    # then
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_revert_action_asks_for_a_reason_then_reverts(admin_client, make_product, sell):
    # given
    product = make_product(keys=1)
    key = sell(product)
    key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    redemption = KeyRedemption.objects.get()
    selection = {"action": "revert_redemptions", "_selected_action": [redemption.pk]}
    # when
    asking = admin_client.post(REDEMPTIONS_URL, selection)
    done = admin_client.post(REDEMPTIONS_URL, {**selection, "apply": "1", "reason": "charged back"},
                             REMOTE_ADDR="192.0.2.44")
    # then
    assert asking.status_code == 200 and 'name="reason"' in asking.content.decode()
    assert done.status_code == 302
    redemption.refresh_from_db()
    assert (redemption.reverted_by, redemption.revert_reason) == ("staff:admin", "charged back")
    event = KeyAuditEvent.objects.get(card_key=key, action="REDEMPTION_REVERTED")
    assert (event.actor, event.ip, event.detail) == ("staff:admin", "192.0.2.44", "redemption r-1: charged back")


def test_revert_without_a_reason_changes_nothing(admin_client, make_product, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    key_redeem(text="PRODUCT-1-KEY-00000", product_ids=[product.pk], redemption_id="r-1", actor="api")
    redemption = KeyRedemption.objects.get()
    # when
    response = admin_client.post(REDEMPTIONS_URL, {"action": "revert_redemptions",
                                                   "_selected_action": [redemption.pk], "apply": "1", "reason": ""})
    # then
    assert response.status_code == 200
    redemption.refresh_from_db()
    assert redemption.reverted_at is None
    assert KeyAuditEvent.objects.filter(action="REDEMPTION_REVERTED").count() == 0
