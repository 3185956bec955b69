"""Browser middleware (sessions, language, user, messages) stepped around for
server-to-server callbacks; everything that protects or traces a request kept."""

from __future__ import annotations

import logging

import pytest
from django.test import RequestFactory
from django.utils import translation

from payments.models import PaymentEvent
from payments.providers.epay import EpayProvider, epay_sign
from shop.project.browser_middleware import BrowserOnly, request_is_server_to_server
from tests.conftest import EPAY_KEY

pytestmark = pytest.mark.django_db

def signed_notice(trade_no: str = "T-BROWSERLESS-1") -> dict:
    params = {"pid": "1001", "trade_no": trade_no, "out_trade_no": "20990101000001", "type": "alipay",
              "name": "Card", "money": "10.00", "trade_status": "TRADE_SUCCESS"}
    params["sign"] = epay_sign(params, EPAY_KEY)
    params["sign_type"] = "MD5"
    return params


@pytest.mark.parametrize(("path", "expected"), [
    ("/payments/epay/notify", True),
    ("/payments/sandbox/notify", True),
    ("/payments/stripe/webhook", True),
    ("/payments/epay/notify/", False),
    ("/payments/epay/notify/extra", False),
    ("/x/payments/epay/notify", False),
    ("/payments/sandbox/pay/20990101000001/", False),
    ("/", False),
    ("/admin/", False),
])
def test_only_the_provider_callback_paths_are_server_to_server(path, expected):
    # when / then
    assert request_is_server_to_server(RequestFactory().post(path)) is expected


def test_a_notify_gets_no_session_user_or_messages_and_every_protective_header(client, epay, caplog):
    # given: a gateway that sends cookies and a language, as some do
    client.cookies["sessionid"] = "whatever"
    # when
    with caplog.at_level(logging.INFO, logger="shop.request"):
        response = client.post("/payments/epay/notify", signed_notice(), HTTP_ACCEPT_LANGUAGE="zh-CN",
                               HTTP_X_REQUEST_ID="gw-42")
    # then: stored and answered, with none of the browser work done
    assert (response.status_code, response.content) == (200, b"success")
    assert PaymentEvent.objects.filter(provider="epay", external_id="T-BROWSERLESS-1").count() == 1
    request = response.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "user")
    assert not hasattr(request, "_messages")
    assert "Content-Language" not in response
    assert not response.cookies
    # and the security headers, the request id and its access line as on any page
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Request-ID"] == "gw-42"
    access = [r for r in caplog.records if r.name == "shop.request"]
    assert [(r.getMessage().rsplit(" ", 1)[0], r.request_id) for r in access] == [
        ("POST /payments/epay/notify 200", "gw-42")
    ]


def test_a_notify_runs_in_the_default_language_whatever_the_thread_had(client, epay, monkeypatch):
    # given: the thread served a buyer in Chinese before (gthread workers reuse threads)
    seen = []
    parse = EpayProvider.parse_callback

    def parse_and_note_language(self, request):
        seen.append(translation.get_language())
        return parse(self, request)

    monkeypatch.setattr(EpayProvider, "parse_callback", parse_and_note_language)
    translation.activate("zh-hans")
    try:
        # when
        response = client.post("/payments/epay/notify", signed_notice(), HTTP_ACCEPT_LANGUAGE="zh-CN")
    finally:
        translation.deactivate()
    # then
    assert response.content == b"success"
    assert seen == ["en"]


def test_a_buyer_page_still_gets_its_session_language_and_user(client):
    # given
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/faq/"})
    # when
    response = client.get("/faq/")
    # then
    assert response.status_code == 200
    assert response["Content-Language"] == "zh-hans"
    request = response.wsgi_request
    assert request.session is not None and request.user.is_anonymous
    assert hasattr(request, "_messages")
    assert response["X-Frame-Options"] == "DENY"


def test_the_admin_login_still_works_through_the_subclassed_middleware(client, django_user_model):
    # given
    django_user_model.objects.create_superuser("boss", "boss@example.com", "s3cret-pass-9")
    # when
    login = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "s3cret-pass-9"})
    index = client.get("/admin/")
    # then
    assert (login.status_code, login["Location"]) == (302, "/admin/")
    assert index.status_code == 200 and index.wsgi_request.user.username == "boss"


def test_browser_only_refuses_a_middleware_whose_hooks_it_could_not_skip():
    # given
    class WithViewHook:
        def __init__(self, get_response):
            self.get_response = get_response

        def process_view(self, request, view, args, kwargs):
            return None

    # when / then
    with pytest.raises(TypeError, match="process_view"):
        type("Skipped", (BrowserOnly, WithViewHook), {})
