"""The OpenAPI document of the public API, and schemathesis against the app
in-process (WSGI, the test database): no answer may be a server error, and
every answer must be one the document describes."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from shop.ops.openapi import DOCUMENT

pytestmark = pytest.mark.django_db


def test_the_document_is_served_and_lists_the_public_api(client):
    # when
    response = client.get("/api/v1/openapi.json")
    # then
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert sorted(DOCUMENT["paths"]) == [
        "/api/v1/keys/activate", "/api/v1/keys/deactivate", "/api/v1/keys/redeem", "/api/v1/keys/validate",
        "/api/v1/keys/verify", "/api/v1/orders", "/api/v1/orders/{order_no}", "/api/v1/orders/{order_no}/resend",
        "/api/v1/payment-methods",
        "/api/v1/products",
    ]


@pytest.fixture
def keep_db_connection():
    """As Django's test client does: a request must not close the test's
    connection (it holds the test transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def merchant_token(make_product, merchant, sell, settings, keep_db_connection):
    # Let generated requests reach the business logic instead of the cooldown.
    settings.KEY_API_COOLDOWN_STEPS = [(10**9, 1)]
    product = make_product(keys=3, slug="game-card")
    sell(product)
    return merchant(product)[1]


# The document as served (test above: the view serves exactly DOCUMENT); the
# requests go to the WSGI app in this process, inside the test's transaction.
schema = schemathesis.openapi.from_dict(DOCUMENT)
_DJANGO = get_wsgi_application()


def APP(environ, start_response):
    # Werkzeug's test client sends no REMOTE_ADDR; a WSGI server on TCP always
    # does. (Without one, riskctl's rate-limit key is "" and django-ratelimit
    # raises: reported to riskctl's owner.)
    if not environ.get("REMOTE_ADDR"):
        environ["REMOTE_ADDR"] = "198.51.100.50"
    return _DJANGO(environ, start_response)


@pytest.mark.slow
@schema.parametrize()
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_never_answers_a_server_error(case, merchant_token):
    # given
    headers = {"Authorization": f"Bearer {merchant_token}"} if case.path.startswith("/api/v1/keys/") else {}
    # when
    response = case.call(headers=headers, app=APP)
    # then
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             response_schema_conformance])
