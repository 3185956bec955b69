"""A manual product (代充) on a phone: the owner's questions on the product
page, a missing answer shown beside its field, then paid and in the queue."""

import re

import pytest
from playwright.sync_api import expect

from shop.models import ManualField, Order, OrderStatus, ProductKind
from shop.services.manual import manual_answers_read

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_fields_render_and_submit_at_phone_width(page, shop_url, make_product, run_worker, screenshot):
    # given: a manual product asking for an account, its password and a server
    product = make_product(name="Game diamonds", kind=ProductKind.MANUAL, fulfil_within_minutes=30)
    ManualField.objects.create(product=product, position=1, key="account", label="Game account", max_length=20,
                               help_text="The ID shown in your profile")
    ManualField.objects.create(product=product, position=2, key="password", label="Account password")
    ManualField.objects.create(product=product, position=3, key="server", label="Server", type="select",
                               choices="Asia\nEurope")
    # when
    page.goto(f"{shop_url}/p/{product.slug}/")
    # then: the questions are there, nothing wider than the phone
    expect(page.get_by_label("Game account")).to_be_visible()
    expect(page.get_by_text("The ID shown in your profile")).to_be_visible()
    expect(page.get_by_text("Prepared by the shop within 30 minutes")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # when: the buyer forgets the password
    page.get_by_label("Game account").fill("player-8812")
    page.get_by_label("Server").select_option("Europe")
    page.get_by_label("Email").fill("buyer@example.com")
    page.get_by_label(re.compile("I accept the terms")).check()
    page.get_by_role("button", name="Buy now").click()
    # then: said beside the field, what was typed kept
    expect(page.locator(".field", has=page.get_by_label("Account password")).locator(".field-error")).to_have_text(
        "Fill in Account password.")
    expect(page.get_by_label("Game account")).to_have_value("player-8812")
    screenshot("missing-answer")
    assert not Order.objects.exists()
    # when: filled in, bought and paid
    page.get_by_label("Account password").fill("pw-123456")
    page.get_by_label(re.compile("I accept the terms")).check()
    page.get_by_role("button", name="Buy now").click()
    expect(page).to_have_url(re.compile(r"/payments/sandbox/pay/"))
    page.get_by_role("button", name=re.compile("Pay")).first.click()
    order = Order.objects.get()
    run_worker()
    # then: the shop prepares it; the buyer is told so
    expect(page.locator("#timeline")).to_contain_text("Being prepared by the shop")
    screenshot("preparing")
    order.refresh_from_db()
    assert order.status == OrderStatus.PREPARING
    assert [a["value"] for a in manual_answers_read(order=order)] == ["player-8812", "pw-123456", "Europe"]
