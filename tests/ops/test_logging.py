"""Structured logs: request ids, JSON lines, and no key, token or secret in any log line."""

import io
import json
import logging
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from shop.models import Order, OrderStatus
from shop.project.observability import ContextFilter, JsonFormatter, RedactFilter, log_redact, request_id_accept
from tests.flows.test_purchase import Browser


@pytest.fixture
def captured_logs():
    """Every log record of the test at DEBUG: raw (as the code wrote it) and
    through the production pipeline (context, redaction, JSON)."""
    raw, shipped = io.StringIO(), io.StringIO()
    raw_handler = logging.StreamHandler(raw)
    raw_handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    json_handler = logging.StreamHandler(shipped)
    json_handler.addFilter(ContextFilter())
    json_handler.addFilter(RedactFilter())
    json_handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    touched = [root, *(logging.getLogger(name) for name in settings.LOGGING["loggers"])]
    levels = [logger.level for logger in touched]
    for logger in touched:
        logger.setLevel(logging.DEBUG)
    root.addHandler(raw_handler)  # first: it sees each record before the redaction freezes it
    root.addHandler(json_handler)
    yield raw, shipped
    root.removeHandler(raw_handler)
    root.removeHandler(json_handler)
    for logger, level in zip(touched, levels):
        logger.setLevel(level)


@pytest.mark.django_db(transaction=True)
def test_purchase_end_to_end_logs_no_key_token_or_secret(
    live_server, settings, make_product, run_worker, smtp_server, captured_logs
):
    # given
    settings.SITE_URL = live_server.url
    settings.SANDBOX_NOTIFY_URL = f"{live_server.url}/payments/sandbox/notify"
    raw, shipped = captured_logs
    make_product(keys=3, slug="game-card", price="100.00")
    # when: order by the API, pay on the sandbox page, the worker notifies and emails, read the keys
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/orders", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"product": "game-card", "quantity": 2, "email": "buyer@example.com"}).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        created = json.loads(response.read())
    browser = Browser(live_server.url)
    pay_url, pay_page = browser.get(created["pay_url"])
    with pytest.raises(urllib.error.HTTPError) as not_this_browsers:
        browser.submit(pay_url, pay_page, {})  # redirects to the order page, which knows only the API's token
    assert not_this_browsers.value.code == 404
    run_worker()
    read = urllib.request.Request(
        f"{live_server.url}/api/v1/orders/{created['order_no']}",
        headers={"Authorization": f"Bearer {created['token']}", "X-Request-ID": "probe-42"},
    )
    with urllib.request.urlopen(read, timeout=30) as response:
        echoed_id = response.headers["X-Request-ID"]
        body = json.loads(response.read())
    # then: the purchase went through
    assert Order.objects.get().status == OrderStatus.DELIVERED
    keys = body["keys"]
    assert keys == ["GAME-CARD-KEY-00000", "GAME-CARD-KEY-00001"]
    assert echoed_id == "probe-42"
    # and every shipped line is JSON; the read carries its request id and order number
    lines = [json.loads(line) for line in shipped.getvalue().splitlines()]
    assert len(lines) >= 4
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    access = [entry for entry in lines if entry.get("request_id") == "probe-42"]
    assert [(e["logger"], e["order_no"]) for e in access] == [("shop.request", created["order_no"])]
    # and no key, token or secret appears anywhere, raw or shipped
    for output in (raw.getvalue(), shipped.getvalue()):
        for secret in [*keys, created["token"], settings.SANDBOX_SECRET]:
            assert secret not in output


def test_log_redact_hides_key_shapes_tokens_and_passwords():
    # when
    text = log_redact(
        "key GAME-CARD-KEY-00001 tok Zx9a8b7c6d5e4f3g2h1i0jKLMN auth Bearer abc.def "
        "password=hunter2 url redis://user:s3cr3t@host:6379/0 order 2611220001234"
    )
    # then
    assert text == (
        "key [redacted] tok [redacted] auth Bearer [redacted] "
        "password=[redacted] url redis://user:[redacted]@host:6379/0 order 2611220001234"
    )


def test_redact_filter_freezes_arguments_and_redacts_them():
    # given
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "sent %s to %s", ("AAAA-BBBB-CCCC", "a@b.c"), None)
    # when
    RedactFilter().filter(record)
    # then
    assert (record.msg, record.args) == ("sent [redacted] to a@b.c", None)


def test_request_id_from_the_caller_is_kept_only_when_safe():
    # then
    assert request_id_accept("abc-123_X.y") == "abc-123_X.y"
    assert len(request_id_accept("x" * 65)) == 32
    assert request_id_accept("bad id\n") != "bad id\n"
    assert len(request_id_accept(None)) == 32


@pytest.mark.django_db
def test_every_response_carries_a_request_id(client):
    # when
    given = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a")
    made = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")
    # then
    assert given["X-Request-ID"] == "lb-7f3a"
    assert len(made["X-Request-ID"]) == 32 and made["X-Request-ID"].isalnum()
