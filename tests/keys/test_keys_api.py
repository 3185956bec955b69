"""POST /api/v1/keys/verify and /redeem: auth, malformed requests, outcomes,
rate limits, the NOT_FOUND cooldown and the guessing alert."""

import hashlib

import pytest

from delivery.models import AlertKind, OwnerAlert
from inventory.apikeys import merchant_api_key_revoke
from inventory.models import KeyAuditEvent, KeyPolicy, KeyRedemption

pytestmark = pytest.mark.django_db

VERIFY = "/api/v1/keys/verify"
REDEEM = "/api/v1/keys/redeem"


def test_verify_without_a_key_is_401(call):
    # when
    response = call(VERIFY, {"key": "X"})
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH_REQUIRED"


def test_verify_with_an_unknown_or_tampered_key_is_401(call, make_product, merchant):
    # given
    _, token = merchant(make_product())
    # when
    tampered = call(VERIFY, {"key": "X"}, token=token[:-1] + ("A" if token[-1] != "A" else "B"))
    garbage = call(VERIFY, {"key": "X"}, token="kd_nothing")
    # then
    assert (tampered.status_code, tampered.json()["error"]["code"]) == (401, "AUTH_REQUIRED")
    assert (garbage.status_code, garbage.json()["error"]["code"]) == (401, "AUTH_REQUIRED")


def test_a_revoked_key_is_403(call, make_product, merchant):
    # given
    api_key, token = merchant(make_product())
    merchant_api_key_revoke(api_key_ids=[api_key.pk])
    # when
    response = call(VERIFY, {"key": "X"}, token=token)
    # then
    assert (response.status_code, response.json()["error"]["code"]) == (403, "KEY_REVOKED")


def test_only_a_hash_of_the_token_is_stored(make_product, merchant):
    # given / when
    api_key, token = merchant(make_product())
    # then
    assert token.startswith(f"kd_{api_key.prefix}_")
    assert api_key.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(api_key.__dict__)


@pytest.mark.parametrize(
    "body, code, fields",
    [
        ("not json", "BAD_JSON", None),
        ("[1]", "BAD_JSON", None),
        ({}, "FIELD_REQUIRED", ["key"]),
        ({"key": "   "}, "FIELD_REQUIRED", ["key"]),
        ({"key": 5}, "FIELD_INVALID", ["key"]),
        ({"key": "x" * 201}, "FIELD_INVALID", ["key"]),
    ],
)
def test_malformed_verify_requests_are_400(call, make_product, merchant, body, code, fields):
    # given
    _, token = merchant(make_product())
    # when
    response = call(VERIFY, body, token=token)
    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error.get("fields")) == (code, fields)


def test_redeem_needs_a_redemption_id(call, make_product, merchant, sell):
    # given
    product = make_product(keys=1)
    sell(product)
    _, token = merchant(product)
    # when
    response = call(REDEEM, {"key": "PRODUCT-1-KEY-00000"}, token=token)
    # then
    assert (response.status_code, response.json()["error"]["fields"]) == (400, ["redemption_id"])
    assert KeyRedemption.objects.count() == 0


def test_verify_outcomes(call, make_product, merchant, sell):
    # given: a sold key, a key in stock, a product with a format
    product = make_product(keys=2)
    KeyPolicy.objects.create(product=product, format_regex=r"^[A-Z0-9-]+$", casefold=True)
    sell(product)
    _, token = merchant(product)
    # when
    valid = call(VERIFY, {"key": " product-1-key-00000 "}, token=token)
    unsold = call(VERIFY, {"key": "PRODUCT-1-KEY-00001"}, token=token)
    unknown = call(VERIFY, {"key": "PRODUCT-1-KEY-99999"}, token=token)
    typo = call(VERIFY, {"key": "PROD#CT-1"}, token=token)
    # then
    assert (valid.status_code, valid.json()) == (
        200, {"valid": True, "code": "VALID", "message": "The key is valid.", "product": "product-1"}
    )
    assert unsold.json() == {"valid": False, "code": "NOT_SOLD", "message": "The key has not been sold.",
                             "product": "product-1"}
    assert unknown.json() == {"valid": False, "code": "NOT_FOUND", "message": "No such key."}
    assert (typo.status_code, typo.json()) == (200, {
        "valid": False, "code": "FORMAT_INVALID", "message": "This does not look like a key of this shop.",
        "hint": "check character 5: character 5 ('#') is not allowed there", "position": 5,
    })


def test_redeem_then_verify_shows_date_and_masked_redeemer(call, make_product, merchant, sell):
    # given
    product = make_product(keys=1)
    key = sell(product)
    _, token = merchant(product)
    # when
    redeemed = call(REDEEM, {"key": "PRODUCT-1-KEY-00000", "redemption_id": "order-77", "redeemer": "player-4242"},
                    token=token, ip="203.0.113.5")
    retried = call(REDEEM, {"key": "PRODUCT-1-KEY-00000", "redemption_id": "order-77", "redeemer": "player-4242"},
                   token=token)
    other = call(REDEEM, {"key": "PRODUCT-1-KEY-00000", "redemption_id": "order-78"}, token=token)
    verified = call(VERIFY, {"key": "PRODUCT-1-KEY-00000"}, token=token)
    # then
    redemption = KeyRedemption.objects.get()
    at = redemption.at.isoformat()
    assert redeemed.json() == {"valid": True, "code": "VALID", "message": "The key is valid.", "product": "product-1",
                               "redeemed_at": at, "redeemer": "pl***42", "redemption_id": "order-77",
                               "replayed": False}
    assert retried.json()["replayed"] is True
    assert other.json() == {"valid": False, "code": "ALREADY_REDEEMED", "message": "The key was already redeemed.",
                            "product": "product-1", "redeemed_at": at, "redeemer": "pl***42"}
    assert verified.json() == other.json()
    event = KeyAuditEvent.objects.get(card_key=key, action="REDEEMED")
    assert (event.actor.startswith("api:"), event.ip) == (True, "203.0.113.5")


def test_the_api_keys_scope_decides_which_keys_it_sees(call, make_product, merchant, sell):
    # given
    mine, theirs = make_product(keys=1), make_product(keys=1)
    sell(theirs)
    _, token = merchant(mine)
    # when
    response = call(REDEEM, {"key": "PRODUCT-2-KEY-00000", "redemption_id": "x"}, token=token)
    # then
    assert response.json()["code"] == "NOT_FOUND"
    assert KeyRedemption.objects.count() == 0


def test_per_api_key_rate_limit_answers_429_with_retry_after(call, make_product, merchant, settings):
    # given
    settings.KEY_API_RATE_PER_KEY = "3/m"
    product = make_product(keys=1)
    _, token = merchant(product)
    # when
    statuses = [call(VERIFY, {"key": "PRODUCT-1-KEY-00000"}, token=token, ip=f"198.51.100.{n}").status_code
                for n in range(4)]
    limited = call(VERIFY, {"key": "PRODUCT-1-KEY-00000"}, token=token)
    # then
    assert statuses == [200, 200, 200, 429]
    assert (limited.json()["error"]["code"], limited["Retry-After"]) == ("RATE_LIMITED", "60")


def test_per_ip_rate_limit_applies_before_authentication(call, settings):
    # given
    settings.KEY_API_RATE_PER_IP = "2/m"
    # when
    statuses = [call(VERIFY, {"key": "X"}, token="kd_guess").status_code for _ in range(3)]
    # then
    assert statuses == [401, 401, 429]


def test_repeated_not_found_starts_an_escalating_cooldown(call, make_product, merchant, sell, settings):
    # given
    settings.KEY_API_COOLDOWN_STEPS = [(3, 60), (5, 600)]
    product = make_product(keys=1)
    sell(product)
    _, token = merchant(product)
    # when: three misses, then even a real key is refused
    misses = [call(VERIFY, {"key": f"NOPE-{n}"}, token=token).json()["code"] for n in range(3)]
    cooled = call(VERIFY, {"key": "PRODUCT-1-KEY-00000"}, token=token)
    # then
    assert misses == ["NOT_FOUND"] * 3
    assert cooled.status_code == 429
    assert cooled.json()["error"]["code"] == "COOLDOWN"
    assert 59 <= int(cooled["Retry-After"]) <= 61


def test_cooldown_steps_double_past_the_last_one(settings):
    # given
    from inventory.keyguard import cooldown_for

    settings.KEY_API_COOLDOWN_STEPS = [(10, 60), (20, 600)]
    # when
    table = {n: cooldown_for(n) for n in (9, 10, 11, 20, 39, 40, 80, 160, 100_000 * 2 ** 5)}
    # then
    assert table == {9: 0, 10: 60, 11: 0, 20: 600, 39: 0, 40: 1200, 80: 2400, 160: 4800, 3_200_000: 0}


def test_many_well_formed_misses_raise_one_owner_alert(call, make_product, merchant, settings,
                                                        django_capture_on_commit_callbacks):
    # given
    settings.KEY_API_GUESS_ALERT_MISSES = 4
    settings.KEY_API_COOLDOWN_STEPS = [(1000, 60)]
    product = make_product(keys=1)
    KeyPolicy.objects.create(product=product, format_regex=r"^PRODUCT-1-KEY-[0-9]{5}$")
    api_key, token = merchant(product)
    # when: badly formed input does not count, well-formed guesses do
    with django_capture_on_commit_callbacks(execute=False):
        call(VERIFY, {"key": "garbage"}, token=token)
        for n in range(10):
            call(VERIFY, {"key": f"PRODUCT-1-KEY-{90000 + n}"}, token=token)
    # then
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key, alert.occurrences) == (AlertKind.KEY_GUESSING, f"key-guessing:apikey:{api_key.pk}", 1)
    assert "PRODUCT-1-KEY" not in alert.subject + alert.body


def test_end_user_confines_the_cooldown_to_that_user(call, make_product, merchant, sell, settings):
    # given
    settings.KEY_API_COOLDOWN_STEPS = [(2, 60)]
    product = make_product(keys=1)
    sell(product)
    _, token = merchant(product)
    # when: one end user misses twice
    for n in range(2):
        call(VERIFY, {"key": f"NOPE-{n}", "end_user": "player-1"}, token=token)
    guesser = call(VERIFY, {"key": "PRODUCT-1-KEY-00000", "end_user": "player-1"}, token=token)
    other = call(VERIFY, {"key": "PRODUCT-1-KEY-00000", "end_user": "player-2"}, token=token)
    # then
    assert (guesser.status_code, guesser.json()["error"]["code"]) == (429, "COOLDOWN")
    assert (other.status_code, other.json()["code"]) == (200, "VALID")


def test_an_api_key_for_a_product_sees_the_keys_of_its_variants(call, make_product, merchant, sell):
    # given: a key sold from the 90-day variant of a product the API key is for
    membership, other = make_product(slug="membership"), make_product(keys=1)
    ninety = make_product(slug="membership-90", name="90 days", parent=membership, keys=1)
    sold, sold_other = sell(ninety), sell(other)
    _, token = merchant(membership)
    # when
    response = call(VERIFY, {"key": sold.secret}, token=token)
    outside = call(VERIFY, {"key": sold_other.secret}, token=token)
    # then: its variants' keys are in scope, another product's are not
    assert response.json()["code"] == "VALID"
    assert outside.json()["code"] == "NOT_FOUND"
