"""The owner's dashboard (the admin's home page) in a real Chromium: the SVG charts stay inside their cards."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "dashboard-owner-pw-1"

BOXES = """() => [...document.querySelectorAll('.kd-svg')].map(svg => {
  const card = svg.closest('.kd-card').getBoundingClientRect();
  const chart = svg.getBoundingClientRect();
  const bars = [...svg.querySelectorAll('rect')].map(r => r.getBoundingClientRect());
  return {id: svg.id, card: [card.left, card.right], chart: [chart.left, chart.right],
          bars: bars.map(b => [b.left, b.right]), viewport: document.documentElement.clientWidth};
})"""


def _log_in(page, shop_url):
    get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password=PASSWORD)
    page.goto(f"{shop_url}/admin/login/?next=/admin/dashboard/")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    # the dashboard's old address (bookmarks) leads to the home page, which is the dashboard
    expect(page).to_have_url(f"{shop_url}/admin/")


@pytest.mark.parametrize("width", [390, 1280])
def test_stock_and_status_bars_fit_their_cards(page, shop_url, make_product, make_unpaid_order, screenshot, width):
    # given: a product with many keys (the longest bar), one that is empty, orders awaiting payment
    product = make_product(keys=40, name="Game Card 100 with a rather long product name")
    make_product(keys=3, name="Gift Card 50")
    make_product(name="Empty Card")
    for _ in range(3):
        make_unpaid_order(product=product)
    page.set_viewport_size({"width": width, "height": 900})
    _log_in(page, shop_url)
    expect(page.locator("#kd-stock-chart")).to_be_visible()
    # when
    boxes = page.evaluate(BOXES)
    screenshot(f"{width}px")
    # then
    assert [box["id"] for box in boxes] == ["kd-days-chart", "kd-status-chart", "kd-stock-chart"]
    for box in boxes:
        card_left, card_right = box["card"]
        assert card_right <= box["viewport"] + 0.5, box
        assert card_left - 0.5 <= box["chart"][0] and box["chart"][1] <= card_right + 0.5, box
        # the horizontal bar charts' longest bar is drawn at a readable length (the days chart has one column a day)
        longest = 14 if box["id"] == "kd-days-chart" else 50
        assert box["bars"] and max(right - left for left, right in box["bars"]) > longest, box
        assert all(card_left - 0.5 <= left and right <= card_right + 0.5
                                   for left, right in box["bars"]), box
    assert re.search(r"\d", page.locator("#kd-stock-chart").text_content())
