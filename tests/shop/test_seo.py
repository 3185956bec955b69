"""What crawlers and link previews read: robots.txt, the description, the
canonical address and a product's Open Graph tags."""

from html.parser import HTMLParser
from urllib.robotparser import RobotFileParser

import pytest
from django.templatetags.static import static

pytestmark = pytest.mark.django_db

SITE = "https://shop.example.com"


class HeadTags(HTMLParser):
    """``<meta>`` (by name or property) and ``<link rel>`` of a page."""

    def __init__(self, html: str):
        super().__init__()
        self.meta: dict[str, list[str]] = {}
        self.links: dict[str, list[str]] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and ("name" in attrs or "property" in attrs):
            self.meta.setdefault(attrs.get("name") or attrs["property"], []).append(attrs["content"])
        if tag == "link":
            self.links.setdefault(attrs["rel"], []).append(attrs["href"])


@pytest.fixture
def site(settings):
    settings.SITE_URL = SITE
    return settings


def test_robots_txt_keeps_crawlers_out_of_staff_api_payment_and_sign_in_link_pages(client):
    # when
    response = client.get("/robots.txt")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    robots = RobotFileParser()
    robots.parse(response.content.decode().splitlines())
    for path in ("/admin/", "/api/v1/products", "/payments/epay/notify", "/lookup/link/abc", "/i18n/setlang/"):
        assert not robots.can_fetch("*", path), path
    for path in ("/", "/p/game-card/", "/faq/", "/lookup/", "/keys/check"):
        assert robots.can_fetch("*", path), path


def test_a_product_page_describes_itself_for_search_and_sharing(client, site, make_product):
    # given
    product = make_product(keys=1, slug="game-card", name="Game Card 100", price="100.00",
                           description="Redeem on the game's site.\nAny region.")
    # when: asked under another host name, with a query string
    response = client.get("/p/game-card/?ref=forum", HTTP_HOST="127.0.0.1")
    # then: every address is the shop's own, absolute, without the query
    assert response.status_code == 200
    tags = HeadTags(response.content.decode())
    url = f"{SITE}/p/game-card/"
    assert tags.links["canonical"] == [url]
    assert tags.meta == {
        "description": ["Redeem on the game's site. Any region."],  # the Markdown's words on one line
        "og:type": ["product"],
        "og:site_name": ["Kamidrop"],
        "og:title": ["Game Card 100"],
        "og:description": ["Redeem on the game's site. Any region."],  # the Markdown's words on one line
        "og:url": [url],
        "og:image": [SITE + static("shop/icon-192.png")],
        "og:image:width": ["192"],
        "og:image:height": ["192"],
        "og:image:alt": ["Kamidrop"],
        "og:locale": ["en_US"],
        "product:price:amount": ["100.00"],
        "product:price:currency": [product.currency],
        "twitter:card": ["summary"],
        "viewport": ["width=device-width, initial-scale=1"],
    }


def test_a_product_without_a_description_is_described_by_the_delivery_promise(client, site, make_product):
    # given
    make_product(keys=1, slug="bare", name="Bare Card")
    # when
    tags = HeadTags(client.get("/p/bare/").content.decode())
    # then
    assert tags.meta["description"] == ["Delivered automatically, seconds after payment."]
    assert tags.meta["og:description"] == ["Delivered automatically, seconds after payment."]


@pytest.mark.parametrize("path", ["/", "/lookup/", "/faq/", "/keys/check"])
def test_every_buyer_page_has_a_description_and_its_canonical_address(client, site, path):
    # when
    tags = HeadTags(client.get(path).content.decode())
    # then
    assert tags.links["canonical"] == [SITE + path]
    assert len(tags.meta["description"]) == 1 and len(tags.meta["description"][0]) > 50
    assert "og:type" not in tags.meta


def test_the_not_found_page_asks_not_to_be_indexed_and_leads_back(client, site):
    # when
    response = client.get("/p/no-such-product/")
    # then
    assert response.status_code == 404
    tags = HeadTags(response.content.decode())
    assert tags.meta["robots"] == ["noindex"]
    assert "description" not in tags.meta
    assert b"<h1>Not found</h1>" in response.content
    assert b'href="/lookup/"' in response.content
