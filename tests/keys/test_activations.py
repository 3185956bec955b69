"""Licence activations: up to the product's limit, validate, deactivate by the
merchant or by the buyer from the order page."""

import pytest

from inventory.models import KeyActivation, KeyAuditEvent, KeyPolicy
from shop.access import SESSION_ORDERS

pytestmark = pytest.mark.django_db

ACTIVATE = "/api/v1/keys/activate"
VALIDATE = "/api/v1/keys/validate"
DEACTIVATE = "/api/v1/keys/deactivate"
KEY = "PRODUCT-1-KEY-00000"


@pytest.fixture
def licence(make_product, merchant, sell):
    product = make_product(keys=1)
    KeyPolicy.objects.create(product=product, activation_limit=2)
    key = sell(product)
    _, token = merchant(product)
    return key, token


def test_activate_up_to_the_limit(call, licence):
    # given
    key, token = licence
    # when
    first = call(ACTIVATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    again = call(ACTIVATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    second = call(ACTIVATE, {"key": KEY, "instance": "desktop"}, token=token).json()
    third = call(ACTIVATE, {"key": KEY, "instance": "phone"}, token=token).json()
    # then
    assert (first["code"], first["activations"], first["replayed"]) == ("VALID", {"used": 1, "limit": 2}, False)
    assert (again["code"], again["replayed"]) == ("VALID", True)
    assert (second["code"], second["activations"]) == ("VALID", {"used": 2, "limit": 2})
    assert (third["valid"], third["code"], third["activations"]) == (
        False, "ACTIVATION_LIMIT_REACHED", {"used": 2, "limit": 2}
    )
    assert sorted(KeyActivation.objects.values_list("instance_id", flat=True)) == ["desktop", "laptop"]
    assert KeyAuditEvent.objects.filter(card_key=key, action="ACTIVATED").count() == 2


def test_validate_and_deactivate_free_a_slot(call, licence):
    # given
    _, token = licence
    call(ACTIVATE, {"key": KEY, "instance": "laptop"}, token=token)
    # when
    active = call(VALIDATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    other = call(VALIDATE, {"key": KEY, "instance": "phone"}, token=token).json()
    freed = call(DEACTIVATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    after = call(VALIDATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    freed_again = call(DEACTIVATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    # then
    assert (active["code"], other["code"]) == ("VALID", "INSTANCE_NOT_ACTIVATED")
    assert (freed["code"], freed["instance"]) == ("VALID", "laptop")
    assert (after["code"], freed_again["code"]) == ("INSTANCE_NOT_ACTIVATED", "INSTANCE_NOT_ACTIVATED")
    assert KeyActivation.objects.get().deactivated_by.startswith("api:")


def test_a_product_without_activations_refuses_them(call, make_product, merchant, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    _, token = merchant(product)
    # when
    response = call(ACTIVATE, {"key": KEY, "instance": "laptop"}, token=token).json()
    # then
    assert response["code"] == "ACTIVATION_DISABLED"
    assert KeyActivation.objects.count() == 0


def test_the_buyer_frees_a_slot_from_the_order_page(client, call, licence):
    # given: the buyer's browser may see the order
    key, token = licence
    call(ACTIVATE, {"key": KEY, "instance": "old laptop"}, token=token)
    activation = KeyActivation.objects.get()
    order_no = key.order_line.order.order_no
    session = client.session
    session[SESSION_ORDERS] = [order_no]
    session.save()
    page = client.get(f"/orders/{order_no}/").content.decode()
    assert "old laptop" in page and f"/orders/{order_no}/activations/{activation.pk}/deactivate" in page
    # when
    response = client.post(f"/orders/{order_no}/activations/{activation.pk}/deactivate", REMOTE_ADDR="192.0.2.8")
    # then
    assert (response.status_code, response["Location"]) == (302, f"/orders/{order_no}/")
    activation.refresh_from_db()
    assert (activation.deactivated_by, activation.deactivated_at is not None) == ("buyer", True)
    event = KeyAuditEvent.objects.get(action="DEACTIVATED")
    assert (event.actor, event.ip, event.detail) == ("buyer", "192.0.2.8", "instance old laptop")


def test_another_browser_cannot_free_the_slot(client, call, licence):
    # given
    key, token = licence
    call(ACTIVATE, {"key": KEY, "instance": "laptop"}, token=token)
    activation = KeyActivation.objects.get()
    # when
    response = client.post(f"/orders/{key.order_line.order.order_no}/activations/{activation.pk}/deactivate")
    # then
    assert response.status_code == 404
    activation.refresh_from_db()
    assert activation.deactivated_at is None
