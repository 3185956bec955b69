"""Identifiers: a client cannot forge its IP; emails are compared as providers do."""

import pytest
from django.test import RequestFactory

from riskctl.identity import client_ip, device_id, email_domain_disposable, email_normalise

rf = RequestFactory()


def test_forwarded_for_is_ignored_from_an_untrusted_peer(settings):
    # given: no trusted proxies, a client claiming another address
    settings.TRUSTED_PROXIES = []
    request = rf.get("/", REMOTE_ADDR="198.51.100.20", HTTP_X_FORWARDED_FOR="1.2.3.4")
    # then
    assert client_ip(request) == "198.51.100.20"


def test_forwarded_for_is_read_from_the_right_behind_a_trusted_proxy(settings):
    # given: our proxy at 10.0.0.5; the client put a fake address on the left
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7, 10.0.0.9")
    # then: the first address not ours, from the right
    assert client_ip(request) == "203.0.113.7"


def test_garbage_forwarded_for_falls_back_to_the_peer(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="' OR 1=1 --")
    assert client_ip(request) == "10.0.0.5"


@pytest.mark.parametrize("raw, normalised", [
    ("John.Smith+shop@Gmail.com", "johnsmith@gmail.com"),
    ("j.smith@googlemail.com", "jsmith@gmail.com"),
    ("a.b+tag@outlook.com", "a.b@outlook.com"),
    ("First.Last+x@example.com", "first.last+x@example.com"),
])
def test_email_normalisation(raw, normalised):
    assert email_normalise(raw) == normalised


def test_disposable_domains_match_with_subdomains():
    assert email_domain_disposable("mailinator.com")
    assert email_domain_disposable("eu.mailinator.com")
    assert not email_domain_disposable("example.com")


def test_device_id_accepts_only_the_scripts_format():
    good = "0123456789abcdef0123456789abcdef.1a2b3c4d"
    assert device_id(rf.get("/"), good) == good
    assert device_id(rf.get("/", HTTP_COOKIE=f"kd_dev={good}")) == good
    assert device_id(rf.get("/"), "<script>") == ""
