"""The NOT_FOUND miss budget per API key and per client address, which a new
``end_user`` on every call does not reset (issue 18, point 6)."""

import random
import time

import pytest

from delivery.models import AlertKind, OwnerAlert
from inventory.models import KeyPolicy

pytestmark = pytest.mark.django_db

VERIFY = "/api/v1/keys/verify"
SOLD = "PRODUCT-1-KEY-00000"
SERVER = "198.51.100.7"
ELSEWHERE = "203.0.113.9"


@pytest.fixture
def sold_product(make_product, sell):
    """Product 1 with its key 00000 sold and a format a guesser can match."""
    product = make_product(keys=2)
    KeyPolicy.objects.create(product=product, format_regex=r"^PRODUCT-1-KEY-[0-9]{5}$")
    sell(product)
    return product


def _guesses(count: int) -> list[str]:
    """Well-formed keys that do not exist (the stock is 00000 and 00001)."""
    return [f"PRODUCT-1-KEY-{n}" for n in random.Random(18).sample(range(10000, 100000), count)]


def test_new_end_users_do_not_reset_the_api_keys_miss_budget(call, sold_product, merchant, settings,
                                                             django_capture_on_commit_callbacks):
    # given: a budget of 50 misses per API key; the address budget out of the way
    settings.KEY_API_MISS_BUDGET_PER_KEY = 50
    settings.KEY_API_MISS_BUDGET_PER_IP = 10_000
    settings.KEY_API_MISS_BUDGET_SECONDS = 600
    api_key, token = merchant(sold_product)
    _, other_token = merchant(sold_product, name="web shop")
    # when: 60 random well-formed keys, each from a new end user
    with django_capture_on_commit_callbacks(execute=False):
        answers = [call(VERIFY, {"key": key, "end_user": f"player-{n}"}, token=token)
                   for n, key in enumerate(_guesses(60))]
        same_key_elsewhere = call(VERIFY, {"key": SOLD, "end_user": "player-new"}, token=token, ip=ELSEWHERE)
        other_key = call(VERIFY, {"key": SOLD, "end_user": "player-0"}, token=other_token)
    # then: the 51st answer is a cooldown, and so is every one after it
    assert [a.status_code for a in answers] == [200] * 50 + [429] * 10
    assert [a.json()["code"] for a in answers[:50]] == ["NOT_FOUND"] * 50
    assert [a.json()["error"]["code"] for a in answers[50:]] == ["COOLDOWN"] * 10
    assert 599 <= int(answers[50]["Retry-After"]) <= 601
    assert (same_key_elsewhere.status_code, same_key_elsewhere.json()["error"]["code"]) == (429, "COOLDOWN")
    assert (other_key.status_code, other_key.json()["code"]) == (200, "VALID")
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key, alert.occurrences) == (
        AlertKind.KEY_GUESSING, f"key-guessing:apikey:{api_key.pk}", 1)
    assert "PRODUCT-1-KEY" not in alert.subject + alert.body


def test_new_end_users_do_not_reset_the_addresss_miss_budget(call, sold_product, merchant, settings,
                                                             django_capture_on_commit_callbacks):
    # given: a budget of 20 misses per address; the API key budget out of the way
    settings.KEY_API_MISS_BUDGET_PER_KEY = 10_000
    settings.KEY_API_MISS_BUDGET_PER_IP = 20
    settings.KEY_API_MISS_BUDGET_SECONDS = 600
    _, token = merchant(sold_product)
    _, other_token = merchant(sold_product, name="web shop")
    # when: one address spends the budget with a new end user each time, then tries on
    with django_capture_on_commit_callbacks(execute=False):
        answers = [call(VERIFY, {"key": key, "end_user": f"player-{n}"}, token=token, ip=SERVER)
                   for n, key in enumerate(_guesses(30))]
        other_key_same_address = call(VERIFY, {"key": SOLD}, token=other_token, ip=SERVER)
        same_key_elsewhere = call(VERIFY, {"key": SOLD, "end_user": "player-0"}, token=token, ip=ELSEWHERE)
    # then
    assert [a.status_code for a in answers] == [200] * 20 + [429] * 10
    assert [a.json()["code"] for a in answers[:20]] == ["NOT_FOUND"] * 20
    assert [a.json()["error"]["code"] for a in answers[20:]] == ["COOLDOWN"] * 10
    assert 599 <= int(answers[20]["Retry-After"]) <= 601
    assert (other_key_same_address.status_code, other_key_same_address.json()["error"]["code"]) == (429, "COOLDOWN")
    assert (same_key_elsewhere.status_code, same_key_elsewhere.json()["code"]) == (200, "VALID")
    alert = OwnerAlert.objects.get()
    assert (alert.kind, alert.dedupe_key, alert.occurrences) == (AlertKind.KEY_GUESSING, f"key-guessing:ip:{SERVER}", 1)


def test_a_merchants_end_users_below_the_budgets_still_get_answers(call, sold_product, merchant, settings,
                                                                   django_capture_on_commit_callbacks):
    # given
    settings.KEY_API_MISS_BUDGET_PER_KEY = 50
    settings.KEY_API_MISS_BUDGET_PER_IP = 20
    _, token = merchant(sold_product)
    guesses = _guesses(20)
    # when: 19 end users of the merchant's server each mistype a key once
    with django_capture_on_commit_callbacks(execute=False):
        misses = [call(VERIFY, {"key": key, "end_user": f"player-{n}"}, token=token).json()["code"]
                  for n, key in enumerate(guesses[:19])]
        answer = call(VERIFY, {"key": SOLD, "end_user": "player-19"}, token=token)
        repeat = call(VERIFY, {"key": SOLD, "end_user": "player-3"}, token=token)
        alerts_below = OwnerAlert.objects.count()
        last_miss = call(VERIFY, {"key": guesses[19], "end_user": "player-20"}, token=token)
        after = call(VERIFY, {"key": SOLD, "end_user": "player-21"}, token=token)
    # then: answers up to and with the 20th miss, a cooldown after it
    assert misses == ["NOT_FOUND"] * 19
    assert (answer.status_code, answer.json()["code"]) == (200, "VALID")
    assert (repeat.status_code, repeat.json()["code"]) == (200, "VALID")
    assert alerts_below == 0
    assert (last_miss.status_code, last_miss.json()["code"]) == (200, "NOT_FOUND")
    assert (after.status_code, after.json()["error"]["code"]) == (429, "COOLDOWN")


def test_the_budget_is_fresh_after_its_window(call, sold_product, merchant, settings,
                                              django_capture_on_commit_callbacks):
    # given: a budget of 2 misses per second
    settings.KEY_API_MISS_BUDGET_PER_KEY = 2
    settings.KEY_API_MISS_BUDGET_SECONDS = 1
    _, token = merchant(sold_product)
    with django_capture_on_commit_callbacks(execute=False):
        for n, key in enumerate(_guesses(2)):
            call(VERIFY, {"key": key, "end_user": f"player-{n}"}, token=token)
        cooled = call(VERIFY, {"key": SOLD, "end_user": "player-2"}, token=token)
        # when
        time.sleep(1.5)
        later = call(VERIFY, {"key": SOLD, "end_user": "player-2"}, token=token)
    # then
    assert cooled.status_code == 429
    assert (later.status_code, later.json()["code"]) == (200, "VALID")
