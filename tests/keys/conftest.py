"""Fixtures for the key API: sold keys, merchant API keys, an API client."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from inventory.apikeys import merchant_api_key_create
from inventory.models import CardKey
from shop.models import Order
from shop.services import order_fulfil, order_mark_paid


def pay(order) -> str:
    """The paid step of the flow for ``order`` (as the callback runs it)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=order, actor="test")
        return order_fulfil(order=order)


@pytest.fixture
def sell(make_unpaid_order):
    """Sell one key of ``product`` (the oldest in stock); return the CardKey."""

    def run(product) -> CardKey:
        order = make_unpaid_order(product=product)
        pay(order)
        return CardKey.objects.get(order_line__order=order)

    return run


@pytest.fixture
def merchant(db):
    """A merchant API key scoped to ``products``; returns (MerchantApiKey, token)."""

    def make(*products, name: str = "game server"):
        return merchant_api_key_create(name=name, product_ids=[p.pk for p in products])

    return make


@pytest.fixture
def call(client):
    """POST JSON to a key endpoint with a Bearer token."""

    def post(path: str, body, *, token: str | None = None, ip: str = "198.51.100.7"):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return client.post(path, data=data, content_type="application/json", REMOTE_ADDR=ip, **headers)

    return post
