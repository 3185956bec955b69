"""Buyer pages carry a Content-Security-Policy that allows no inline script."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/lookup/", "/faq/"])
def test_buyer_pages_allow_scripts_and_styles_from_this_site_only(client, path):
    policy = client.get(path)["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in policy


def test_the_admin_is_left_to_its_own_inline_styles(admin_client):
    assert "Content-Security-Policy" not in admin_client.get("/admin/")
