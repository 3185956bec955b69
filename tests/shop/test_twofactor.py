"""Two-factor sign-in for staff (issue 19, point 6), through the admin's real
login form: enrolment, the code step, recovery codes, the gate on every admin
path, throttling of wrong codes, and the setting's default."""

import os
import re
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from delivery.models import AlertKind, OwnerAlert
from shop.twofactor.services import recovery_codes_replace

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
PASSWORD = "Right-Horse-Battery-41"
OWNER_IP = "198.51.100.20"
OTHER_IP = "198.51.100.99"
ENROL = "/admin/2fa/enrol/"
VERIFY = "/admin/2fa/verify/"


@pytest.fixture(autouse=True)
def required(settings):
    settings.ADMIN_REQUIRE_2FA = True


@pytest.fixture
def owner(db):
    return User.objects.create_superuser("owner", "owner@example.com", PASSWORD)


@pytest.fixture
def clerk(db):
    return User.objects.create_user("clerk", "clerk@example.com", PASSWORD, is_staff=True)


def _code(device: TOTPDevice, *, ahead: int = 0) -> str:
    """What the authenticator app shows (``ahead`` steps later: the code just used cannot be used again)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + ahead * device.step
    return f"{totp.token():06d}"


def _password(client: Client, username: str = "owner", next_url: str = "/admin/"):
    return client.post("/admin/login/", {"username": username, "password": PASSWORD, "next": next_url})


def _enrol(client: Client) -> tuple[TOTPDevice, list[str]]:
    page = client.get(f"{ENROL}?next=/admin/")
    secret = re.search(r'id="kd-2fa-secret">([A-Z2-7 ]+)<', page.content.decode()).group(1)
    device = TOTPDevice.objects.get(confirmed=False)
    response = client.post(ENROL, {"code": _code(device), "next": "/admin/"})
    assert response.status_code == 200, response.content
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", response.content.decode())
    device.refresh_from_db()
    assert secret.replace(" ", "") == device.config_url.split("secret=")[1].split("&")[0]
    return device, codes


@pytest.fixture
def enrolled_owner(owner):
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    device, codes = _enrol(client)
    return owner, device, codes


def _verify(client: Client, code: str, next_url: str = "/admin/"):
    return client.post(VERIFY, {"code": code, "next": next_url})


# --- the setting ------------------------------------------------------------

PRODUCTION = {
    "SECRET_KEY": "s" * 50, "KEY_ENCRYPTION_KEYS": "Z" * 43 + "=", "KEY_FINGERPRINT_PEPPER": "pepper",
    "ALLOWED_HOSTS": "shop.example.com", "SITE_URL": "https://shop.example.com",
    "DATABASE_URL": "postgres://u:p@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0",
    "EMAIL_URL": "smtp://shop:pw@smtp.example.com:587?tls=1",
}


def _require_2fa_with(tmp_path, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION, "DEBUG", "ADMIN_REQUIRE_2FA"}}
    environ.update({**PRODUCTION, **env, "KAMIDROP_DATA_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-c", "import shop.project.settings as s; print(s.ADMIN_REQUIRE_2FA)"],
                            cwd=BASE_DIR, env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("env, expected", [
    ({"DEBUG": "0"}, "True"),
    ({"DEBUG": "1"}, "False"),  # what `make run` (shop/project/devstack.py) sets
    ({"DEBUG": "0", "ADMIN_REQUIRE_2FA": "0"}, "False"),
    ({"DEBUG": "1", "ADMIN_REQUIRE_2FA": "1"}, "True"),
])
def test_requiring_2fa_defaults_to_on_with_debug_off(tmp_path, env, expected):
    assert _require_2fa_with(tmp_path, **env) == expected


def test_the_make_run_demo_admin_logs_in_with_just_the_password(settings):
    # given: the demo's superuser, with 2FA as `make run` has it (DEBUG on)
    settings.ADMIN_REQUIRE_2FA = False
    out = _run_demo()
    password = re.search(r"password (\S+) \(shown once", out).group(1)
    client = Client()
    # when
    response = client.post("/admin/login/", {"username": "admin", "password": password, "next": "/admin/"})
    # then
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/django-rq/").status_code == 200


def _run_demo() -> str:
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


# --- the gate ---------------------------------------------------------------

ADMIN_PATHS = [
    "/admin/",
    "/admin/shop/order/",
    "/admin/auth/user/",
    "/admin/password_change/",
    "/admin/dashboard/",
    "/admin/django-rq/",
    "/admin/payments/paymentmethod/doctor/",
    "/admin/2fa/",
]


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_a_superuser_with_no_device_is_sent_to_enrolment_from_every_admin_page(owner, path):
    # given: signed in with the password only
    client = Client()
    assert _password(client).status_code == 302
    # when
    response = client.get(path)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"{ENROL}?next={path.replace('/', '%2F')}"


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_an_enrolled_user_who_has_not_given_a_code_reaches_no_admin_page(enrolled_owner, path):
    # given
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    # when
    response = client.get(path)
    post = client.post(path, {})
    # then
    assert response.status_code == 302 and response["Location"].startswith(f"{VERIFY}?next=")
    assert post.status_code == 302 and post["Location"].startswith(f"{VERIFY}?next=")


def test_an_unverified_user_cannot_enrol_a_new_device(enrolled_owner):
    # given: someone with the password, not the phone
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    # when
    page = client.get(ENROL)
    post = client.post(ENROL, {"code": "123456"})
    # then
    assert page.status_code == 302 and page["Location"].startswith(VERIFY)
    assert post.status_code == 302 and post["Location"].startswith(VERIFY)
    assert list(TOTPDevice.objects.values_list("pk", "confirmed")) == [(device.pk, True)]


def test_the_code_step_needs_a_staff_session():
    response = Client().get(f"{VERIFY}?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- enrolment and sign-in --------------------------------------------------

def test_enrolment_shows_a_qr_code_and_the_secret_then_recovery_codes_once(owner):
    # given
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    # when
    page = client.get(f"{ENROL}?next=/admin/")
    again = client.get(f"{ENROL}?next=/admin/")
    device, codes = _enrol(client)
    # then
    assert '<svg' in page.content.decode() and 'id="kd-2fa-qr"' in page.content.decode()
    secret = re.compile(r'id="kd-2fa-secret">([A-Z2-7 ]+)<')
    assert secret.search(page.content.decode()).group(1) == secret.search(again.content.decode()).group(1)
    assert device.confirmed and device.name == "Authenticator app"
    assert device.config_url.startswith("otpauth://totp/Kamidrop%3Aowner?")
    assert len(codes) == 10 and len(set(codes)) == 10
    assert sorted(StaticToken.objects.filter(device__user=owner).values_list("token", flat=True)) == sorted(codes)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/django-rq/").status_code == 200
    # the codes are not shown again
    assert not any(code in client.get("/admin/2fa/").content.decode() for code in codes)


def test_a_wrong_code_does_not_confirm_the_enrolment(owner):
    # given
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    client.get(ENROL)
    device = TOTPDevice.objects.get()
    # when
    response = client.post(ENROL, {"code": f"{(int(_code(device)) + 1) % 10**6:06d}"})
    # then
    assert response.status_code == 200
    assert "That code is not right" in response.content.decode()
    assert not TOTPDevice.objects.filter(confirmed=True).exists() and not StaticToken.objects.exists()
    assert client.get("/admin/")["Location"].startswith(ENROL)


def test_the_next_sign_in_asks_for_the_code_after_the_password(enrolled_owner):
    # given
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    # when
    login = _password(client, next_url="/admin/shop/order/")
    step = client.get(login["Location"])
    response = _verify(client, _code(device, ahead=1), next_url="/admin/shop/order/")
    # then
    assert login["Location"] == "/admin/shop/order/"
    assert step.status_code == 302 and step["Location"] == f"{VERIFY}?next=%2Fadmin%2Fshop%2Forder%2F"
    assert response.status_code == 302 and response["Location"] == "/admin/shop/order/"
    assert client.get("/admin/shop/order/").status_code == 200
    assert client.get("/admin/django-rq/").status_code == 200


def test_a_code_cannot_be_used_twice(enrolled_owner):
    # given: the code that confirmed the enrolment
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    # when
    response = _verify(client, _code(device))
    # then
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_a_recovery_code_signs_in_once(enrolled_owner):
    # given
    owner, _device, codes = enrolled_owner
    first, second = Client(REMOTE_ADDR=OWNER_IP), Client(REMOTE_ADDR=OWNER_IP)
    _password(first)
    _password(second)
    # when
    used = _verify(first, codes[3].upper()[:4] + "-" + codes[3][4:])  # typed in capitals with a dash
    again = _verify(second, codes[3])
    # then
    home = first.get("/admin/")
    assert used.status_code == 302 and home.status_code == 200
    assert "9 recovery codes are left" in home.content.decode()
    assert again.status_code == 200 and "That code is not right" in again.content.decode()
    assert second.get("/admin/").status_code == 302
    assert StaticToken.objects.filter(device__user=owner).count() == 9
    assert not StaticToken.objects.filter(token=codes[3]).exists()


def test_new_recovery_codes_replace_the_old_ones(enrolled_owner):
    # given: signed in with a code
    _owner, device, old_codes = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    _verify(client, _code(device, ahead=1))
    # when
    response = client.post("/admin/2fa/recovery-codes/")
    # then
    new_codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", response.content.decode())
    assert response.status_code == 200 and len(new_codes) == 10
    assert sorted(StaticToken.objects.values_list("token", flat=True)) == sorted(new_codes)
    assert not set(old_codes) & set(new_codes)


def test_staff_who_are_not_superusers_are_not_forced_but_may_enrol(clerk):
    # given
    client = Client(REMOTE_ADDR=OWNER_IP)
    # when
    _password(client, "clerk")
    page = client.get("/admin/2fa/")
    # then: in with the password alone, and offered to enrol
    assert client.get("/admin/").status_code == 200
    assert "Set up two-factor sign-in" in page.content.decode()
    # when: they enrol
    device, _ = _enrol(client)
    client.post("/admin/logout/")
    again = Client(REMOTE_ADDR=OWNER_IP)
    _password(again, "clerk")
    # then: from now on they are asked
    assert again.get("/admin/")["Location"].startswith(VERIFY)
    assert _verify(again, _code(device, ahead=1)).status_code == 302
    assert again.get("/admin/").status_code == 200


def test_recovery_codes_cannot_be_made_without_an_authenticator(clerk):
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client, "clerk")
    response = client.post("/admin/2fa/recovery-codes/")
    assert response.status_code == 302 and response["Location"] == "/admin/2fa/"
    assert not StaticToken.objects.exists()


def test_a_superuser_with_recovery_codes_left_but_no_app_is_asked_for_a_code(owner):
    # given: the authenticator was removed (lost phone) but recovery codes remain
    codes = recovery_codes_replace(user=owner)
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    # then
    assert client.get("/admin/")["Location"].startswith(VERIFY)
    assert _verify(client, codes[0]).status_code == 302
    assert client.get("/admin/").status_code == 200


# --- throttling -------------------------------------------------------------

def _wrong(device: TOTPDevice) -> str:
    right = {_code(device, ahead=n) for n in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(10**6)) if c not in right)


def test_wrong_codes_lock_the_account_at_that_address_and_alert_the_owner(enrolled_owner):
    # given
    _owner, device, codes = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    wrong = _wrong(device)
    # when
    statuses = [_verify(client, wrong).status_code for _ in range(django_settings.AXES_FAILURE_LIMIT)]
    # then: locked, and the session is signed out
    assert statuses == [200] * (django_settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    # the right password from that address is refused too; a recovery code no longer gets in
    assert _password(client).status_code == 429
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    # another address is not affected
    elsewhere = Client(REMOTE_ADDR=OTHER_IP)
    assert _password(elsewhere).status_code == 302
    assert _verify(elsewhere, codes[0]).status_code == 302
    alert = OwnerAlert.objects.get(kind=AlertKind.ADMIN_LOCKOUT)
    assert alert.dedupe_key == f"admin-lockout:{OWNER_IP}:owner"
    assert "wrong passwords or sign-in codes" in alert.body
    (attempt,) = AccessAttempt.objects.all()
    assert (attempt.username, attempt.ip_address) == ("owner", OWNER_IP)
    assert wrong not in attempt.post_data


def test_signing_in_again_with_the_password_does_not_forget_wrong_codes(enrolled_owner):
    # given: one short of the limit in wrong codes
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    wrong = _wrong(device)
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        _verify(client, wrong)
    # when: the password again, then one more guess
    relogin = _password(client)
    response = _verify(client, wrong)
    # then
    assert relogin.status_code == 302
    assert response.status_code == 429


def test_the_right_code_forgets_earlier_failures(enrolled_owner):
    # given: a wrong code, then (after the device's back-off) the right one
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    _verify(client, _wrong(device))
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    # when
    response = _verify(client, _code(device, ahead=1))
    # then
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()


def test_after_a_wrong_code_the_device_makes_you_wait(enrolled_owner):
    # given
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    _verify(client, _wrong(device))
    # when: the right code straight away
    response = _verify(client, _code(device, ahead=1))
    # then
    assert response.status_code == 200
    assert "Too many wrong codes. Wait 1 second, then try again." in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_too_many_failures_from_an_address_refuse_the_code_form_too(enrolled_owner, settings):
    # given: the address has used up its limit across usernames
    settings.ADMIN_LOGIN_IP_FAILURE_LIMIT = 2
    _owner, device, _ = enrolled_owner
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    for name in ("a", "b"):
        Client(REMOTE_ADDR=OWNER_IP).post("/admin/login/", {"username": name, "password": "x"})
    # when
    response = _verify(client, _code(device, ahead=1))
    # then
    assert response.status_code == 429
    assert client.get("/admin/")["Location"].startswith(VERIFY)


def test_a_one_time_code_from_the_command_line_lets_a_locked_out_owner_in(enrolled_owner):
    # given: phone and recovery codes lost; another way onto the server
    out = StringIO()
    call_command("addstatictoken", "owner", stdout=out)
    client = Client(REMOTE_ADDR=OWNER_IP)
    _password(client)
    # when
    response = _verify(client, out.getvalue().strip())
    # then
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
