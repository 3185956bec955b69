"""No HTTP 500 from anyone's input (issue 18, point 7): the cases found by
hand, one regression test each, then a fuzz run over every public endpoint
with NUL, lone surrogates, huge strings, deep nesting, wrong types and %00
in path segments."""

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from inventory.apikeys import merchant_api_key_create
from inventory.models import CardKey, CardKeyStatus
from shop.access import SESSION_ORDERS, order_token_hash
from shop.models import Order

pytestmark = pytest.mark.django_db



def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth

UNREACHABLE_REDIS = "unix:///nonexistent/kamidrop-redis.sock"


def _post_json(client, path: str, body, **headers):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **headers)


# --- the listed cases -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["coupon", "product"])
def test_a_nul_byte_in_an_order_field_is_refused_not_a_500(client, make_product, field):
    # given
    make_product(keys=3, slug="a-card")
    body = {"product": "a-card", "quantity": 1, "email": "x@example.com", field: "a-card\x00"}
    # when
    response = _post_json(client, "/api/v1/orders", body)
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "FIELD_INVALID"
    assert response.json()["error"]["fields"] == [field]
    assert Order.objects.count() == 0
    assert CardKey.objects.filter(status=CardKeyStatus.AVAILABLE).count() == 3


def test_a_lone_surrogate_in_an_order_field_is_refused_not_a_500(client, make_product):
    # given: "\ud800" is valid JSON but no UTF-8 string PostgreSQL can store
    make_product(keys=3, slug="a-card")
    body = '{"product": "a-card", "quantity": 1, "email": "x@example.com", "coupon": "\\ud800"}'
    # when
    response = _post_json(client, "/api/v1/orders", body)
    # then
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["fields"]) == ("FIELD_INVALID", ["coupon"])
    assert Order.objects.count() == 0


@pytest.fixture
def merchant_auth(make_product) -> dict:
    token = merchant_api_key_create(name="game server", product_ids=[make_product(keys=1).pk])[1]
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/keys/verify"])
def test_50000_deep_json_is_refused_by_its_size(client, merchant_auth, path):
    # when: 100,000 bytes of brackets
    response = _post_json(client, path, deep_json(50_000), **merchant_auth)
    # then
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BODY_TOO_LARGE"
    assert Order.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/keys/verify"])
@pytest.mark.parametrize("body", [deep_json(5_000), nested_object(5_000), deep_json(33), nested_object(33)])
def test_json_nested_deeper_than_32_is_a_400_within_the_size_limit(client, merchant_auth, path, body):
    # when: 5,000 levels fit in 64 KiB and are past json.loads' recursion limit
    response = _post_json(client, path, body, **merchant_auth)
    # then
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "BAD_JSON", "message": "The body may nest at most 32 levels deep.", "ref": response.json()["error"]["ref"]}
    assert Order.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/keys/verify"])
def test_json_nested_32_deep_is_parsed(client, merchant_auth, path):
    # when: brackets inside strings do not count
    body = '{"x": "' + "[" * 40 + '", "a": ' + nested_object(31) + "}"
    response = _post_json(client, path, body, **merchant_auth)
    # then: parsed; the fields are what is missing
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "FIELD_REQUIRED"


def test_an_oversized_body_is_a_413(client, db):
    # when
    response = _post_json(client, "/api/v1/orders", {"product": "x" * 100_000, "quantity": 1, "email": "x@e.com"})
    # then
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BODY_TOO_LARGE"
    assert Order.objects.count() == 0


def test_a_field_of_another_key_endpoint_with_a_wrong_type_is_ignored(client, merchant_auth):
    # given: redemption_id belongs to /redeem; /verify does not read it (found by the fuzz below)
    body = {"key": "NOPE-NOPE-NOPE", "redemption_id": True, "instance": ["x"]}
    # when
    response = _post_json(client, "/api/v1/keys/verify", body, **merchant_auth)
    # then
    assert response.status_code == 200
    assert (response.json()["valid"], response.json()["code"]) == (False, "NOT_FOUND")


def test_nul_in_the_order_number_of_the_api_is_a_404(client, db):
    # when
    response = client.get("/api/v1/orders/2401010000%00", HTTP_AUTHORIZATION="Bearer anything")
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ORDER_NOT_FOUND"


@pytest.mark.parametrize("path", ["/orders/2401010000%00/", "/orders/2401010000%00/?t=abc",
                                  "/orders/2401010000%00/status", "/payments/sandbox/pay/2401010000%00/",
                                  "/payments/pay/2401010000%00/", "/payments/pay/2401010000%00/status"])
def test_nul_in_the_order_number_of_a_buyer_page_is_a_404(client, db, path):
    # when
    response = client.get(path)
    # then
    assert response.status_code == 404


def test_order_creation_while_redis_is_down_checks_out_without_the_rate_limit(client, make_product, settings):
    # given: the cache (rate-limit counters) on a socket nobody listens on
    make_product(keys=3, slug="a-card")
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": UNREACHABLE_REDIS}}
    settings.REDIS_URL = UNREACHABLE_REDIS
    # when
    response = _post_json(client, "/api/v1/orders", {"product": "a-card", "quantity": 1, "email": "x@example.com"})
    # then: the order is taken (the database is the source of truth), unthrottled
    assert response.status_code == 201
    assert Order.objects.get().order_no == response.json()["order_no"]


# --- fuzz: every public endpoint --------------------------------------------------------

# Per endpoint: bounded (38 endpoints × 30 requests of 20–60 ms stay within a
# minute), the same examples every run (derandomize), no deadline, no example database.
FUZZ = hypothesis_settings(max_examples=30, derandomize=True, deadline=None, database=None,
                           suppress_health_check=list(HealthCheck))

HUGE = "X" * 100_000
SPECIAL_TEXT = ["", " ", "\x00", "a-card\x00", "\ud800", "x\udfffy", "%00", HUGE, "null", "[]", "{}", "-1", "0",
                "9" * 40, "1e999", "NaN", "' OR 1=1 --", "../../etc/passwd", "<script>x</script>", "😀", "\u202e"]
# Any code point, NUL and lone surrogates included (hypothesis leaves out surrogates by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
nasty_text = st.one_of(st.sampled_from(SPECIAL_TEXT), any_text)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30),
                      st.floats(allow_nan=True, allow_infinity=True), nasty_text)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner,
                                                                                                 max_size=3),
                          max_leaves=8)
# What a spoiled value is, each kind as likely as the others: with NUL, with a
# lone surrogate, 100,000 characters, anything, a wrong type (JSON only), nested 40 deep (JSON only).
bad_text = st.one_of(any_text.map(lambda t: t + "\x00" + t), any_text.map(lambda t: t + "\ud800"), st.just(HUGE),
                     nasty_text)
bad_json = st.one_of(bad_text, json_value, st.just(json.loads(deep_json(40))))
SPECIAL_BODIES = [deep_json(50_000), nested_object(5_000), deep_json(33), "[" * 40, '{"a": "\\ud800"}',
                  '{"a": "\\u0000"}', "\ufeff{}", "", "null", "1" * 5000, '"' + HUGE + '"', "{'a': 1}"]
# What a WSGI server can put in a header: latin-1 text (PEP 3333), NUL included.
header_text = st.one_of(st.sampled_from(["", "\x00", "Bearer", "Bearer ", "Bearer \x00", "Basic x", "bearer " + "k" * 5000]),
                        st.text(st.characters(max_codepoint=255), max_size=40).map(lambda t: "Bearer " + t))


def _quote(text: str) -> str:
    """Percent-encode as a client would: a lone surrogate as its (invalid) UTF-8 bytes."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _form(fields: dict) -> str:
    return "&".join(f"{_quote(str(name))}={_quote(str(value))}" for name, value in fields.items())


@dataclass(frozen=True)
class Endpoint:
    methods: tuple[str, ...]
    path: str  # {name} segments come from ``segments`` of the world, or are fuzzed
    body: str = "none"  # "json", "form" or "none" (then fuzzed query parameters)
    fields: tuple[str, ...] = ()
    auth: str = ""  # "merchant" or "order": a valid Bearer token most of the time

    def __str__(self):
        return f"{'/'.join(self.methods)} {self.path}"


_KEY_FIELDS = ("key", "redemption_id", "redeemer", "instance", "end_user")
_CHECKOUT_FIELDS = ("quantity", "email", "phone", "coupon", "query_password", "terms", "method", "provider",
                    "device_id", "preview")
ENDPOINTS = [
    # buyer pages
    Endpoint(("GET",), "/"),
    Endpoint(("GET", "POST"), "/p/{slug}/", "form", _CHECKOUT_FIELDS),
    Endpoint(("GET",), "/orders/{order_no}/", fields=("t", "s")),
    Endpoint(("GET",), "/orders/{order_no}/status"),
    Endpoint(("POST",), "/orders/{order_no}/pay", "form", ("method",)),
    Endpoint(("POST",), "/orders/{order_no}/resend", "form"),
    Endpoint(("POST",), "/orders/{order_no}/keys/{key_id}/reveal", "form"),
    Endpoint(("POST",), "/orders/{order_no}/keys/{key_id}/report", "form", ("reason",)),
    Endpoint(("POST",), "/orders/{order_no}/activations/{key_id}/deactivate", "form"),
    Endpoint(("GET", "POST"), "/lookup/", "form", ("order_no", "email", "query_password", "send_link")),
    Endpoint(("GET",), "/lookup/link/{token}"),
    Endpoint(("GET",), "/faq/"),
    Endpoint(("POST",), "/i18n/setlang/", "form", ("language", "next")),
    Endpoint(("GET",), "/healthz"),
    Endpoint(("GET",), "/metrics", auth="metrics"),
    Endpoint(("GET", "POST"), "/keys/check", "form", ("key",)),
    # JSON API
    Endpoint(("GET",), "/api/v1/products"),
    Endpoint(("GET",), "/api/v1/payment-methods", fields=("product",)),
    Endpoint(("POST",), "/api/v1/orders", "json", ("product", "quantity", "email", "phone", "provider", "method",
                                                     "device_id", "coupon")),
    Endpoint(("GET",), "/api/v1/orders/{order_no}", auth="order"),
    Endpoint(("POST",), "/api/v1/orders/{order_no}/resend", "json", auth="order"),
    Endpoint(("GET",), "/api/v1/openapi.json"),
    *[Endpoint(("POST",), f"/api/v1/keys/{verb}", "json", _KEY_FIELDS, auth="merchant")
      for verb in ("verify", "redeem", "activate", "validate", "deactivate")],
    # payments
    Endpoint(("GET",), "/payments/pay/{reference}/"),
    Endpoint(("GET",), "/payments/pay/{reference}/status"),
    Endpoint(("GET", "POST"), "/payments/sandbox/pay/{reference}/", "form", ("mode",)),
    *[Endpoint(("GET", "POST"), f"/payments/{provider}/notify", "form",
               ("trade_no", "out_trade_no", "amount", "money", "currency", "trade_status", "pid", "sign", "type"))
      for provider in ("sandbox", "epay", "alipay", "wechat", "usdt", "{provider}")],
    Endpoint(("POST",), "/payments/stripe/webhook", "json", ("id", "type", "data")),
]


ALL_FIELDS = sorted({name for endpoint in ENDPOINTS for name in endpoint.fields})


@pytest.fixture
def world(client, settings, epay, make_product, make_unpaid_order, pay):
    """Real values for every path segment and field, so fuzzed requests also get
    past the first lookups: a product, a paid order with a key (this browser's,
    with a known API token), a merchant API key, EPay configured."""
    # Fuzzed requests reach the code behind the limits (the limits are tested on their own).
    settings.RATELIMIT_ENABLE = False
    settings.KEY_API_COOLDOWN_STEPS = [(10**9, 1)]
    settings.KEY_API_MISS_BUDGET_PER_KEY = settings.KEY_API_MISS_BUDGET_PER_IP = 0
    settings.METRICS_TOKEN = "fuzz-metrics-token"
    product = make_product(keys=5, slug="a-card")
    order = pay(make_unpaid_order(product=product))
    token = "fuzz-order-token-0123456789abcdef"
    Order.objects.filter(pk=order.pk).update(token_hash=order_token_hash(token))
    session = client.session
    session[SESSION_ORDERS] = [order.order_no]
    session.save()
    return {
        "segments": {"slug": "a-card", "order_no": order.order_no, "reference": order.order_no,
                     "key_id": str(CardKey.objects.filter(order_line__order=order).first().pk), "provider": "epay",
                     "token": "x"},
        "fields": {"product": "a-card", "quantity": 1, "email": "x@example.com", "key": "A-CARD-KEY-00000",
                   "order_no": order.order_no, "terms": "on", "method": "sandbox", "instance": "pc-1",
                   "redemption_id": "r-1"},
        "tokens": {"order": token, "merchant": merchant_api_key_create(name="fuzz", product_ids=[product.pk])[1],
                   "metrics": settings.METRICS_TOKEN},
    }


def _request(draw, endpoint: Endpoint, world: dict) -> dict:
    """A request to ``endpoint`` that is real but for one or two spoiled parts
    (a path segment, a field, an unknown field, the token, the whole body), so
    that the spoiled part reaches the code behind the first checks."""
    method = draw(st.sampled_from(endpoint.methods))
    segments = re.findall(r"{(\w+)}", endpoint.path)
    sends_body = method != "GET" and endpoint.body != "none"
    parts = [*segments, *endpoint.fields, "extra", *(["auth"] if endpoint.auth else []),
             *(["body", "binary"] if sends_body else [])]
    spoiled = set(draw(st.lists(st.sampled_from(parts), max_size=2, unique=True)))
    path = endpoint.path
    for name in segments:
        segment = world["segments"][name]
        if name in spoiled:
            segment = draw(st.one_of(st.just(segment + "\x00"), bad_text.filter(bool),
                                     st.integers(min_value=-1).map(str)))
        path = path.replace("{" + name + "}", _quote(segment), 1)
    bad_value = bad_json if endpoint.body == "json" else bad_text
    fields = {name: world["fields"][name] for name in endpoint.fields if name in world["fields"]}
    for name in spoiled.intersection(endpoint.fields):
        fields[name] = draw(bad_value)
    if "extra" in spoiled:  # a field the endpoint does not take, or another endpoint's
        fields[draw(st.one_of(bad_text, st.sampled_from(ALL_FIELDS)))] = draw(bad_value)
    headers = {}
    if endpoint.auth:
        headers["HTTP_AUTHORIZATION"] = (draw(header_text) if "auth" in spoiled
                                         else f"Bearer {world['tokens'][endpoint.auth]}")
    if not sends_body:
        query = _form(fields)
        return {"method": method, "path": path + ("?" + query if query else ""), "data": b"", "headers": headers,
                "content_type": "application/octet-stream"}
    content_type = "application/json" if endpoint.body == "json" else "application/x-www-form-urlencoded"
    data = json.dumps(fields) if endpoint.body == "json" else _form(fields)
    if "body" in spoiled:
        data = draw(st.one_of(st.sampled_from(SPECIAL_BODIES), json_value.map(json.dumps)))
    body = data.encode("utf-8", "surrogatepass")
    if "binary" in spoiled:
        body = draw(st.binary(max_size=300))
        content_type = draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                             "multipart/form-data; boundary=x", "text/plain", ""]))
    return {"method": method, "path": path, "data": body, "headers": headers, "content_type": content_type}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_no_public_endpoint_answers_a_server_error(client, world, endpoint):
    @FUZZ
    @given(data=st.data())
    def run(data):
        # given
        request = data.draw(st.composite(lambda draw: _request(draw, endpoint, world))())
        # when
        response = client.generic(request["method"], request["path"], request["data"],
                                  content_type=request["content_type"], REMOTE_ADDR="198.51.100.9",
                                  **request["headers"])
        # then
        assert response.status_code < 500, (request["method"], request["path"][:300], response.status_code)

    run()


RATE_LIMITED_REQUESTS = [
    ("POST", "/p/a-card/", "quantity=1&email=x%40example.com&terms=on&method=sandbox"),
    ("POST", "/orders/{order_no}/pay", "method=sandbox"),
    ("POST", "/orders/{order_no}/resend", ""),
    ("POST", "/orders/{order_no}/keys/{key_id}/reveal", ""),
    ("POST", "/orders/{order_no}/keys/{key_id}/report", "reason=broken"),
    ("POST", "/lookup/", "order_no={order_no}&email=x%40example.com&query_password=secret1"),
    ("GET", "/lookup/link/abc", ""),
    ("POST", "/keys/check", "key=A-CARD-KEY-00000"),
    ("GET", "/api/v1/orders/{order_no}", ""),
    ("POST", "/api/v1/orders/{order_no}/resend", "{}"),
    ("POST", "/api/v1/keys/verify", '{"key": "NOPE-NOPE-NOPE"}'),
]


@pytest.mark.parametrize("method, path, body", RATE_LIMITED_REQUESTS, ids=[p for _, p, _ in RATE_LIMITED_REQUESTS])
def test_rate_limited_endpoints_fail_open_while_redis_is_down(client, world, settings, method, path, body):
    # given: rate limits on, their counters on a socket nobody listens on
    settings.RATELIMIT_ENABLE = True
    settings.KEY_API_COOLDOWN_STEPS = [(1, 60)]  # the key guard would cool down at the first miss
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": UNREACHABLE_REDIS}}
    for name in ("order_no", "key_id"):
        path, body = (text.replace("{" + name + "}", world["segments"][name]) for text in (path, body))
    token = world["tokens"]["merchant" if "/keys/" in path and path.startswith("/api/") else "order"]
    # when
    responses = [
        client.generic(method, path, body, content_type="application/json" if path.startswith("/api/") else
                       "application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Bearer {token}",
                       REMOTE_ADDR="198.51.100.9")
        for _ in range(3)
    ]
    # then: no server error, and no limit or cooldown enforced without its counters
    assert [r.status_code for r in responses if r.status_code >= 500 or r.status_code == 429] == []
