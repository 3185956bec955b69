"""Admin login throttling (issue 18, point 5), through the real login form:
django-axes per username + address, a per-address limit across usernames,
owner alerts, the unlock commands, and the client address spoofing cannot move."""

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from delivery.models import AlertKind, OwnerAlert

pytestmark = pytest.mark.django_db

LOGIN_URL = "/admin/login/"
RIGHT = "Right-Horse-Battery-41"
WRONG = "Wrong-Guess-7f3a"
ATTACKER_IP = "203.0.113.7"
OWNER_IP = "198.51.100.20"
PROXY_IP = "10.0.0.5"


@pytest.fixture
def owner(db):
    return User.objects.create_superuser("owner", "owner@example.com", RIGHT)


def _login(client: Client, username: str, password: str, **headers):
    return client.post(LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, **headers)


def _logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def _lock_out(client: Client, username: str = "owner", **headers) -> list[int]:
    return [_login(client, username, WRONG, **headers).status_code for _ in range(settings.AXES_FAILURE_LIMIT)]


def test_wrong_passwords_lock_the_account_at_that_address_and_alert_the_owner(owner):
    # given
    attacker = Client(REMOTE_ADDR=ATTACKER_IP)
    # when
    statuses = _lock_out(attacker)
    response = _login(attacker, "owner", RIGHT)
    # then
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert response.status_code == 429
    assert not _logged_in(attacker)
    alert = OwnerAlert.objects.get(kind=AlertKind.ADMIN_LOCKOUT)
    assert alert.dedupe_key == f"admin-lockout:{ATTACKER_IP}:owner"
    assert "owner" in alert.subject and ATTACKER_IP in alert.subject
    assert f"axes_reset_ip_username {ATTACKER_IP} owner" in alert.body
    assert alert.occurrences == 2  # the lockout, then the refused right password
    for text in (alert.subject, alert.body):
        assert WRONG not in text and RIGHT not in text
    (attempt,) = AccessAttempt.objects.all()
    assert (attempt.username, attempt.ip_address) == ("owner", ATTACKER_IP)
    assert WRONG not in attempt.post_data and RIGHT not in attempt.post_data


def test_the_owner_still_logs_in_from_another_address(owner):
    # given
    attacker = Client(REMOTE_ADDR=ATTACKER_IP)
    _lock_out(attacker)
    the_owner = Client(REMOTE_ADDR=OWNER_IP)
    # when
    response = _login(the_owner, "owner", RIGHT)
    # then
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert _logged_in(the_owner)
    assert _login(attacker, "owner", RIGHT).status_code == 429  # still locked where the guessing was


def test_a_few_typos_then_the_right_password_log_in_and_are_forgotten(owner):
    # given
    the_owner = Client(REMOTE_ADDR=OWNER_IP)
    typos = [_login(the_owner, "owner", WRONG).status_code for _ in range(settings.AXES_FAILURE_LIMIT - 1)]
    # when
    response = _login(the_owner, "owner", RIGHT)
    # then
    assert typos == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert not OwnerAlert.objects.exists()
    # the count starts again: a full limit of new typos is needed to lock
    the_owner.logout()
    assert _lock_out(the_owner) == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]


@pytest.mark.parametrize(
    "command, args",
    [
        ("axes_reset_ip_username", [ATTACKER_IP, "owner"]),
        ("axes_reset_username", ["owner"]),
        ("axes_reset_ip", [ATTACKER_IP]),
        ("axes_reset", []),
    ],
)
def test_an_unlock_command_lets_the_owner_in_from_the_locked_address(owner, command, args):
    # given
    client = Client(REMOTE_ADDR=ATTACKER_IP)
    _lock_out(client)
    assert _login(client, "owner", RIGHT).status_code == 429
    # when
    call_command(command, *args)
    response = _login(client, "owner", RIGHT)
    # then
    assert response.status_code == 302
    assert _logged_in(client)


def test_forwarded_for_from_an_untrusted_peer_cannot_dodge_a_lockout(owner):
    # given: a new X-Forwarded-For on every attempt
    attacker = Client(REMOTE_ADDR=ATTACKER_IP)
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(attacker, "owner", WRONG, HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}")
    # when
    response = _login(attacker, "owner", RIGHT, HTTP_X_FORWARDED_FOR="192.0.2.200")
    # then
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER_IP}


def test_forwarded_for_from_an_untrusted_peer_cannot_frame_the_owners_address(owner):
    # given: wrong passwords claiming to come from the owner's address
    statuses = _lock_out(Client(REMOTE_ADDR=ATTACKER_IP), HTTP_X_FORWARDED_FOR=OWNER_IP)
    the_owner = Client(REMOTE_ADDR=OWNER_IP)
    # when
    response = _login(the_owner, "owner", RIGHT)
    # then
    assert statuses[-1] == 429
    assert response.status_code == 302
    assert OwnerAlert.objects.get().dedupe_key == f"admin-lockout:{ATTACKER_IP}:owner"


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_locked(owner, settings):
    # given
    settings.TRUSTED_PROXIES = [PROXY_IP]
    attacker = Client(REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=f"1.2.3.4, {ATTACKER_IP}")
    the_owner = Client(REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=OWNER_IP)
    # when
    statuses = _lock_out(attacker)
    refused = _login(attacker, "owner", RIGHT)
    allowed = _login(the_owner, "owner", RIGHT)
    # then: the attacker's own address is locked, not the proxy's (nor the forged left-most one)
    assert statuses[-1] == 429 and refused.status_code == 429
    assert allowed.status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER_IP}


def test_many_usernames_from_one_address_are_throttled(owner):
    # given: one wrong password each for many usernames, none of them locked on its own
    attacker = Client(REMOTE_ADDR=ATTACKER_IP)
    statuses = [
        _login(attacker, f"admin{i}", WRONG).status_code for i in range(settings.ADMIN_LOGIN_IP_FAILURE_LIMIT)
    ]
    # when
    response = _login(attacker, "owner", RIGHT)
    # then
    assert statuses == [200] * settings.ADMIN_LOGIN_IP_FAILURE_LIMIT
    assert response.status_code == 429
    assert not _logged_in(attacker)
    alert = OwnerAlert.objects.get(kind=AlertKind.ADMIN_LOCKOUT)
    assert alert.dedupe_key == f"admin-lockout:{ATTACKER_IP}"
    assert f"{settings.ADMIN_LOGIN_IP_FAILURE_LIMIT} failed admin logins for " in alert.body
    assert f"axes_reset_ip {ATTACKER_IP}" in alert.body
    assert WRONG not in alert.body and RIGHT not in alert.body
    assert AccessAttempt.objects.filter(username="owner").count() == 0  # refused before any password check
    assert _login(Client(REMOTE_ADDR=OWNER_IP), "owner", RIGHT).status_code == 302


def test_the_address_throttle_lifts_with_axes_reset_ip(owner):
    # given
    attacker = Client(REMOTE_ADDR=ATTACKER_IP)
    for i in range(settings.ADMIN_LOGIN_IP_FAILURE_LIMIT):
        _login(attacker, f"admin{i}", WRONG)
    assert _login(attacker, "owner", RIGHT).status_code == 429
    # when
    call_command("axes_reset_ip", ATTACKER_IP)
    response = _login(attacker, "owner", RIGHT)
    # then
    assert response.status_code == 302
