"""The payment doctor against good and broken fake providers, and a SITE_URL
that does or does not reach this shop."""

from io import StringIO

import pytest
from django.core.management import call_command

from payments.models import PaymentMethod
from payments.services.doctor import payments_doctor
from payments.services.methods import payment_method_save
from tests.fakes.base import FakeGateway, Reply
from tests.fakes.epay import FakeEpay

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway(epay):
    fake = FakeEpay(pid="1001", key="TESTKEY123")
    epay.EPAY_GATEWAY = fake.submit_url
    epay.SANDBOX_ENABLED = False
    yield fake
    fake.close()


def _of(checks, subject):
    return {c.name: c for c in checks if c.subject == subject}


def test_a_good_epay_merchant_passes(gateway, settings):
    # given
    settings.EPAY_QUERY_BEFORE_CREDIT = True
    # when
    checks = _of(payments_doctor(), "epay")
    # then
    assert checks["credentials work"].status == "OK"
    assert checks["clock agrees with the provider's"].status == "OK"
    assert checks["notify URL"].detail == "https://shop.example.com/payments/epay/notify"
    assert checks["query before credit"].status == "INFO"
    assert [r.query["out_trade_no"] for r in gateway.requests] == ["KDPROBE0000000000"]


@pytest.mark.parametrize(("setting", "value"), [("EPAY_KEY", "WRONGKEY"), ("EPAY_PID", "9999")])
def test_a_wrong_epay_key_or_merchant_id_fails_with_the_fix(gateway, settings, setting, value):
    setattr(settings, setting, value)
    check = _of(payments_doctor(), "epay")["credentials work"]
    assert (check.status, check.detail.split(":")[0]) == ("FAIL", "AUTH_FAILED")
    assert "copy both again from the merchant panel" in check.fix


def test_an_unreachable_gateway_fails_with_the_fix(gateway):
    gateway.down = True
    check = _of(payments_doctor(), "epay")["credentials work"]
    assert (check.status, check.detail.split(":")[0]) == ("FAIL", "UNREACHABLE")
    assert "ends in submit.php" in check.fix


def test_a_clock_far_from_the_providers_fails(gateway):
    gateway.clock_offset = -600
    check = _of(payments_doctor(), "epay")["clock agrees with the provider's"]
    assert check.status == "FAIL"
    assert check.detail in ("this server's clock is 600 s ahead of epay's", "this server's clock is 601 s ahead of epay's")
    assert "timedatectl set-ntp true" in check.fix


def test_a_method_without_its_credentials_says_what_is_missing(settings):
    settings.SANDBOX_ENABLED = False
    payment_method_save(method=PaymentMethod(code="epay-2", provider="epay", channel="alipay", name="Alipay",
                                             merchant_id="2002", gateway_url="https://pay.example.com/submit.php"),
                        credentials={})
    check = _of(payments_doctor(), "epay-2")["credentials complete"]
    assert (check.status, check.detail) == ("FAIL", "missing: key")


@pytest.mark.django_db(transaction=True)
def test_site_url_that_reaches_this_shop_passes(live_server, settings):
    settings.SITE_URL = live_server.url
    settings.DEBUG = True
    checks = _of(payments_doctor(), "site")
    assert checks["SITE_URL reaches this shop"].status == "OK"
    assert checks["SITE_URL is https"].status == "WARN"  # DEBUG: http is tolerated, not passed


def test_site_url_that_reaches_another_server_fails(settings):
    class OtherShop(FakeGateway):
        def handle(self, request):
            return Reply(200, {"status": "ok", "site": "0123456789abcdef"})

    other = OtherShop()
    settings.SITE_URL = other.url
    settings.DEBUG = False
    try:
        checks = _of(payments_doctor(), "site")
    finally:
        other.close()
    assert checks["SITE_URL reaches this shop"].status == "FAIL"
    assert "reaches another server" in checks["SITE_URL reaches this shop"].fix
    assert checks["SITE_URL is https"].status == "FAIL"


def test_the_command_prints_each_fix_and_exits_1(gateway, settings):
    # given: a wrong key, and SITE_URL nowhere
    settings.EPAY_KEY = "WRONGKEY"
    settings.SITE_URL = "http://127.0.0.1:1"
    out = StringIO()
    # when
    with pytest.raises(SystemExit) as exit_:
        call_command("payments_doctor", stdout=out)
    # then
    text = out.getvalue()
    assert exit_.value.code == 1
    assert "✗ credentials work: AUTH_FAILED" in text
    assert "fix: The merchant id (pid) or key is wrong" in text
    assert "✗ SITE_URL reaches this shop" in text
    assert "fix: Providers send their notify to SITE_URL" in text


def test_the_admin_page_shows_the_checks(admin_client, gateway):
    response = admin_client.get("/admin/payments/paymentmethod/doctor/")
    assert response.status_code == 200
    assert "credentials work" in response.content.decode()
    assert "/admin/payments/paymentmethod/doctor/" in admin_client.get("/admin/payments/paymentmethod/").content.decode()
