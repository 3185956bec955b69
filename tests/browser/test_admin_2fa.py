"""Two-factor sign-in in a real Chromium: enrol (the secret read off the page, the
code computed here as an authenticator app would), recovery codes, then sign
in with password + code, and with a recovery code that works only once."""

import re
from base64 import b32decode

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from shop.twofactor.services import recovery_codes_replace

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "two-factor-owner-pw-1"
STEP = 30

# How far the page sticks out sideways, and what sticks out (for the failure message).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > width + 0.5)
    .map(e => `${e.tagName}#${e.id}.${e.className}:${Math.round(e.getBoundingClientRect().right)}`);
  return {excess: document.documentElement.scrollWidth - width, wide: wide.slice(0, 5)};
}"""


@pytest.fixture
def owner(settings):
    settings.ADMIN_REQUIRE_2FA = True
    return get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password=PASSWORD)


def _app_code(secret: str, *, ahead: int = 0) -> str:
    """What an authenticator app shows for the key typed in by hand (RFC 6238, SHA-1, 6 digits, 30 s)."""
    totp = TOTP(b32decode(secret.replace(" ", "")), step=STEP)
    totp.time = totp.time + ahead * STEP
    return f"{totp.token():06d}"


def _password(page, shop_url):
    page.goto(f"{shop_url}/admin/login/?next=/admin/")
    page.locator("#id_username").fill("owner")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()


def _log_out(page, shop_url):
    page.locator("#logout-form button").click()
    expect(page.locator("#content")).to_contain_text("Logged out")


def _accept_language(page, value: str):
    # The shared browser context pins its own Accept-Language (locale en-US), which
    # set_extra_http_headers does not replace: rewrite it on the way out instead.
    page.route("**/*", lambda route: route.continue_(headers={**route.request.headers, "accept-language": value}))


def _code(page, code: str):
    page.locator('input[name="code"]').fill(code)
    page.locator("form:has(input[name=code]) [type=submit]").click()


def test_enrol_then_sign_in_with_a_code_and_with_a_recovery_code(page, shop_url, owner, screenshot):
    page.set_viewport_size({"width": 1280, "height": 900})
    # given: the password is right and no authenticator is set up yet
    _password(page, shop_url)
    expect(page).to_have_url(f"{shop_url}/admin/2fa/enrol/?next=%2Fadmin%2F")
    expect(page.locator("#kd-2fa-qr svg")).to_be_visible()
    screenshot("enrol-en")
    secret = page.locator("#kd-2fa-secret").text_content().strip()
    # when: the code from the app confirms it
    _code(page, _app_code(secret))
    # then: ten recovery codes, shown once, then the admin
    expect(page.locator("#kd-2fa-codes li")).to_have_count(10)
    codes = [c.strip() for c in page.locator("#kd-2fa-codes li").all_text_contents()]
    assert all(re.fullmatch(r"[a-z2-7]{8}", c) for c in codes) and len(set(codes)) == 10
    screenshot("recovery-codes-en")
    page.locator("#kd-2fa-continue").click()
    expect(page).to_have_url(f"{shop_url}/admin/")
    page.goto(f"{shop_url}/admin/2fa/")
    expect(page.locator("#kd-2fa-codes-left")).to_contain_text("10 unused recovery codes")
    _log_out(page, shop_url)

    # when: the next sign-in
    _password(page, shop_url)
    expect(page).to_have_url(f"{shop_url}/admin/2fa/verify/?next=%2Fadmin%2F")
    screenshot("verify-en")
    page.goto(f"{shop_url}/admin/django-rq/")  # nothing else is reachable before the code
    expect(page).to_have_url(f"{shop_url}/admin/2fa/verify/?next=%2Fadmin%2Fdjango-rq%2F")
    _code(page, _app_code(secret, ahead=1))
    # then
    expect(page).to_have_url(f"{shop_url}/admin/django-rq/")
    _log_out(page, shop_url)

    # when: a third sign-in with a recovery code
    _password(page, shop_url)
    _code(page, codes[0])
    # then
    expect(page).to_have_url(f"{shop_url}/admin/")
    expect(page.locator(".messagelist")).to_contain_text("9 recovery codes are left")
    _log_out(page, shop_url)

    # when: the same recovery code again
    _password(page, shop_url)
    _code(page, codes[0])
    # then
    expect(page.locator(".errorlist")).to_contain_text("That code is not right")
    expect(page).to_have_url(f"{shop_url}/admin/2fa/verify/?next=%2Fadmin%2F")
    page.goto(f"{shop_url}/admin/")
    expect(page).to_have_url(f"{shop_url}/admin/2fa/verify/?next=%2Fadmin%2F")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_code_pages_fit_a_phone(page, shop_url, owner, screenshot, language):
    # given: a 390 px phone; an owner half-way through enrolment
    page.set_viewport_size({"width": 390, "height": 844})
    _accept_language(page, f"{language},en;q=0.5")
    _password(page, shop_url)
    expect(page.locator("#kd-2fa-qr svg")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", language)
    # then: nothing sticks out sideways
    overflow = page.evaluate(OVERFLOW)
    assert overflow["excess"] <= 0, overflow
    qr = page.locator("#kd-2fa-qr svg").bounding_box()
    assert qr["x"] >= 0 and qr["x"] + qr["width"] <= 390
    screenshot(f"enrol-{language}-390px")
    # given: now enrolled (as if from another browser), signing in again
    TOTPDevice.objects.filter(user=owner).update(confirmed=True)
    recovery_codes_replace(user=owner)
    page.goto(f"{shop_url}/admin/")
    expect(page).to_have_url(f"{shop_url}/admin/2fa/verify/?next=%2Fadmin%2F")
    _code(page, "not-a-code")
    expect(page.locator(".errorlist")).to_be_visible()
    overflow = page.evaluate(OVERFLOW)
    assert overflow["excess"] <= 0, overflow
    screenshot(f"verify-{language}-390px")
