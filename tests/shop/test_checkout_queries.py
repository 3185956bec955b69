"""What one checkout costs in SQL statements (issue 22, point 1): through the
API and through the product page's form, in real transactions (as in
production: a savepoint is a statement there), with the payment methods and
the risk rules cached as production caches them, and with nothing cached.

The bounds are the counts reached when the checkout was made cheaper; a
change that adds a statement to every checkout fails here. Every guarantee
the statements keep is tested beside its code (tests/shop/test_checkout*.py,
test_unpaid_cap.py, tests/riskctl, tests/inventory)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import CardKey, CardKeyStatus
from payments.methods import methods_forget
from payments.models import Payment
from riskctl.models import Assessment, PurchaseLimit
from riskctl.services import rules as risk_rules
from shop.models import Order, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)

# Statements of one checkout of a card-key product (BEGIN, COMMIT and
# savepoints count: each is a round trip), with the payment methods and the
# risk rules cached as in production, and with nothing cached. At 2467a3d,
# before checkout was made cheaper: 28, 35 and 35 (the web form's 20 include
# its session's read and BEGIN/UPDATE/COMMIT).
API_CACHED = 15
API_UNCACHED = 19
WEB_CACHED = 20


@pytest.fixture
def caches(settings):
    """Production's cache windows, emptied before and after (a test after
    this one must not see its rules)."""

    def set_to(*, seconds: int) -> None:
        settings.RISK_CONFIG_CACHE_SECONDS = seconds
        settings.PAYMENT_METHODS_CACHE_SECONDS = seconds
        risk_rules._config_cache["until"] = 0.0
        methods_forget()

    yield set_to
    risk_rules._config_cache["until"] = 0.0
    methods_forget()


def _api_checkout(client, *, product, email: str, **extra):
    body = {"product": product.slug, "quantity": 1, "email": email, "device_id": f"dev-{email}", **extra}
    return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")


def _web_checkout(client, *, product, email: str):
    return client.post(f"/p/{product.slug}/", {"quantity": "1", "email": email, "provider": "sandbox",
                                               "device_id": f"dev-{email}", "terms": "on"})


def _held(order: Order) -> int:
    return CardKey.objects.filter(order_line__order=order, status=CardKeyStatus.HELD).count()


def _placed(email: str) -> Order:
    order = Order.objects.get(email=email)
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert _held(order) == 1
    assert Assessment.objects.get(order=order).stage == Assessment.Stage.CHECKOUT
    assert Payment.objects.get(order=order).pay_action["kind"] == "REDIRECT"
    return order


@pytest.mark.parametrize(("cache_seconds", "bound"), [(10, API_CACHED), (0, API_UNCACHED)])
def test_an_api_checkout_costs_at_most_its_statements(client, make_product, caches, cache_seconds, bound):
    # given: a product with keys, and a first buyer's checkout (caches and the connection warm)
    caches(seconds=cache_seconds)
    product = make_product(keys=5)
    assert _api_checkout(client, product=product, email="first@example.com").status_code == 201
    # when
    with CaptureQueriesContext(connection) as statements:
        response = _api_checkout(client, product=product, email="buyer@example.com")
    # then: the order holds its key, its assessment and its payment, within the bound
    assert response.status_code == 201, response.content
    _placed("buyer@example.com")
    assert len(statements) <= bound, "\n".join(q["sql"][:120] for q in statements.captured_queries)


def test_a_web_form_checkout_costs_at_most_its_statements(client, make_product, caches):
    # given
    caches(seconds=10)
    product = make_product(keys=5)
    assert _web_checkout(client, product=product, email="first@example.com").status_code == 302
    # when
    with CaptureQueriesContext(connection) as statements:
        response = _web_checkout(client, product=product, email="buyer@example.com")
    # then
    assert response.status_code == 302, response.content
    _placed("buyer@example.com")
    assert len(statements) <= WEB_CACHED, "\n".join(q["sql"][:120] for q in statements.captured_queries)


def test_a_purchase_limit_is_counted_in_one_statement_and_still_refuses(client, make_product, caches):
    # given: a limit of 1 per email, bought once by this buyer
    caches(seconds=10)
    product = make_product(keys=5)
    PurchaseLimit.objects.create(product=product, per=PurchaseLimit.Per.EMAIL, max_quantity=1, period_hours=24)
    assert _api_checkout(client, product=product, email="buyer@example.com").status_code == 201
    # when
    with CaptureQueriesContext(connection) as statements:
        refused = _api_checkout(client, product=product, email="buyer@example.com")
    # then: refused before anything is stored, the events read once
    assert refused.status_code != 201
    assert refused.json()["error"]["code"] == "LIMIT_EXCEEDED"
    assert Order.objects.count() == 1
    reads = [q for q in statements.captured_queries if 'FROM "riskctl_riskevent"' in q["sql"]
             and "SUM(" in q["sql"]]
    assert len(reads) == 1
