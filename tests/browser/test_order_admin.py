"""The order page's Actions panel in a real Chromium: resend and replace a key through the buttons."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from delivery.models import Channel, Delivery, DeliveryStatus
from inventory.models import CardKey, CardKeyStatus
from shop.models import Order, OrderEventType, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "order-desk-owner-pw-1"

PANEL_FITS = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('#order-actions a.button')].every(a => {
    const box = a.getBoundingClientRect();
    return box.left >= 0 && box.right <= width + 0.5 && box.width > 0;
  });
}"""


def _log_in(page, shop_url, next_url: str):
    get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password=PASSWORD)
    page.goto(f"{shop_url}/admin/login/?next={next_url}")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{shop_url}{next_url}")


def test_resend_and_replace_a_key_from_the_order_page(page, shop_url, make_product, make_unpaid_order, pay,
                                                      screenshot):
    # given: a delivered order, keys left in stock
    order = pay(make_unpaid_order(product=make_product(keys=3, name="Game Card 100")))
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.DELIVERED, delivered_at=timezone.now())
    old = CardKey.objects.get(order_line__order=order)
    change_url = f"/admin/shop/order/{order.pk}/change/"
    page.set_viewport_size({"width": 1280, "height": 900})
    _log_in(page, shop_url, change_url)
    panel = page.locator("#order-actions")
    expect(panel.get_by_role("link", name="Resend")).to_be_visible()
    expect(panel.get_by_role("link", name="Refund")).to_have_count(0)
    screenshot("order-1280px")

    # when: resend, confirmed with a note
    panel.get_by_role("link", name="Resend").click()
    page.get_by_label("Note").fill("buyer: mail not received")
    page.locator("#order-action-confirm").click()
    # then
    expect(page).to_have_url(f"{shop_url}{change_url}")
    expect(page.locator(".messagelist")).to_contain_text(f"{order.order_no}: the same keys are being sent again (EMAIL).")
    assert Delivery.objects.get(order=order, channel=Channel.EMAIL).resends == 1

    # when: replace the key, with a reason
    page.locator("#order-actions").get_by_role("link", name="Replace a key").click()
    page.get_by_label(f"#{old.pk} · Game Card 100 · ••••{old.secret[-4:]}").check()
    page.get_by_label("Reason").fill("buyer: code rejected")
    page.locator("#order-action-confirm").click()
    # then
    expect(page).to_have_url(f"{shop_url}{change_url}")
    new = CardKey.objects.get(order_line__order=order, status=CardKeyStatus.DELIVERED)
    expect(page.locator(".messagelist")).to_contain_text(
        f"{order.order_no}: key #{old.pk} voided, key #{new.pk} handed over; the keys are being sent again.")
    assert CardKey.objects.get(pk=old.pk).status == CardKeyStatus.VOID
    assert order.events.filter(type=OrderEventType.KEY_REPLACED, actor="staff:owner").count() == 1
    screenshot("after-1280px")

    # when: on a phone
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    # then: every action button is within the screen
    expect(panel.get_by_role("link", name="Replace a key")).to_be_visible()
    assert page.evaluate(PANEL_FITS)
    screenshot("order-390px")
    panel.get_by_role("link", name="Replace a key").click()
    expect(page.locator("#order-action-confirm")).to_be_visible()
    screenshot("replace-390px")
