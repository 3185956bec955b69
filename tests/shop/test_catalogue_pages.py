"""The catalogue and product pages (issue 20, points 1 and 3): search and
category chips with counts, price, stock and sales on every card (in a
bounded number of queries), Markdown descriptions sanitised, the payment
methods' icons, related products, content per language with a fallback, the
JSON API's product list and the product's Open Graph picture."""

import io
import re
from decimal import Decimal

import pytest
from django.utils import translation
from PIL import Image

from inventory.models import CardKey, CardKeyStatus
from payments.methods import methods_forget
from payments.models import PaymentMethod
from payments.services.methods import payment_method_save
from shop import images
from shop.markdown import markdown_html
from shop.models import Category, Product
from shop.selectors import catalogue_page, products_for_sale, products_related

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-Hans"}


def _cards(html: str) -> list[str]:
    """The product names on the cards, in page order."""
    return re.findall(r'<h3 class="pcard-name">([^<]*)</h3>', html)


@pytest.fixture
def shelf(make_product):
    """Two categories (games first), five active products and one hidden."""
    games = Category.objects.create(slug="games", name="Games", name_zh="游戏", position=1)
    soft = Category.objects.create(slug="software", name="Software", name_zh="软件", position=2)
    Category.objects.create(slug="empty", name="Empty", name_zh="空", position=3)
    made = {
        "steam": make_product(keys=3, slug="steam", name="Steam Card", name_zh="蒸汽卡", category=games),
        "points": make_product(keys=0, slug="points", name="Game Points", name_zh="游戏点券", category=games),
        "vpn": make_product(keys=2, slug="vpn", name="VPN Pro", name_zh="加速器", category=soft),
        "office": make_product(keys=1, slug="office", name="Office Key", name_zh="办公软件", category=soft),
        "loose": make_product(keys=1, slug="loose", name="Mystery Box", name_zh="盲盒"),
    }
    made["hidden"] = make_product(keys=1, slug="hidden", name="Steam Hidden", category=games, active=False)
    return made


# --- search and categories ---------------------------------------------------------------


def test_the_catalogue_lists_by_category_with_chips_that_count_active_products(client, shelf):
    # when
    html = client.get("/").content.decode()
    # then: All (5), Games (2), Software (2); no chip for a category without active products
    chips = re.findall(r'<nav class="chips".*?</nav>', html, re.S)[0]
    assert re.findall(r'>([^<>]+) <span class="count">\((\d+)\)</span>', chips) == [
        ("All", "5"), ("Games", "2"), ("Software", "2")]
    assert 'aria-current="page">All' in chips
    assert ">Empty" not in chips
    assert '<h2 id="results-title">All products</h2>' in html
    # one grid: the categories in their order, by name within each, uncategorised last
    assert _cards(html) == ["Game Points", "Steam Card", "Office Key", "VPN Pro", "Mystery Box"]
    assert "Steam Hidden" not in html


@pytest.mark.parametrize("query, expected", [
    ("steam", ["Steam Card"]),
    ("STEAM", ["Steam Card"]),
    ("  vpn ", ["VPN Pro"]),
    ("游戏", ["Game Points"]),
    ("o", ["Game Points", "Office Key", "VPN Pro", "Mystery Box"]),  # by category, then name
])
def test_search_finds_by_english_or_chinese_name_in_any_case(client, shelf, query, expected):
    # when
    html = client.get("/", {"q": query}).content.decode()
    # then
    assert _cards(html) == expected


def test_search_and_category_combine_and_the_chips_count_what_the_search_found(client, shelf):
    # when
    html = client.get("/", {"q": "o", "c": "software"}).content.decode()
    # then
    assert _cards(html) == ["Office Key", "VPN Pro"]
    chips = re.findall(r'<nav class="chips".*?</nav>', html, re.S)[0]
    assert re.findall(r'>([^<>]+) <span class="count">\((\d+)\)</span>', chips) == [
        ("All", "4"), ("Games", "1"), ("Software", "2")]
    assert 'href="?c=software&amp;q=o" aria-current="page"' in chips
    assert '<input type="hidden" name="c" value="software">' in html
    assert 'value="o"' in html


def test_a_category_chip_alone_filters(client, shelf):
    html = client.get("/", {"c": "games"}).content.decode()
    assert _cards(html) == ["Game Points", "Steam Card"]
    assert "2 products." in html


def test_an_unknown_category_shows_everything(client, shelf):
    html = client.get("/", {"c": "no-such-thing"}).content.decode()
    assert len(_cards(html)) == 5


def test_an_empty_result_says_so_in_a_sentence_and_links_back_to_all_products(client, shelf):
    # when
    response = client.get("/", {"q": "nothing like this"})
    html = response.content.decode()
    # then
    assert response.status_code == 200
    assert _cards(html) == []
    assert "Nothing matches “nothing like this”." in html
    assert '<a href="/">See all products</a>' in html


def test_an_empty_result_in_chinese(client, shelf):
    html = client.get("/", {"q": "无此商品"}, **ZH).content.decode()
    assert _cards(html) == []
    assert '<html lang="zh-Hans">' in html
    assert '<a href="/">' in html


@pytest.mark.parametrize("query", ["%00", "a%00b", "%ED%A0%80", "%FF", "x" * 5000, "%25", "_", "'%20OR%201=1%20--"])
def test_any_search_text_answers_a_page_not_an_error(client, shelf, query):
    response = client.get(f"/?q={query}&c={query}")
    assert response.status_code == 200


def test_nul_and_lone_surrogates_are_dropped_from_a_search(shelf):
    assert [p.slug for p in catalogue_page(query="ste\x00am\ud800").products] == ["steam"]


def test_like_wildcards_in_a_search_are_plain_characters(shelf):
    assert catalogue_page(query="%").products == []
    assert catalogue_page(query="_").products == []


# --- price, stock and sales -------------------------------------------------------------


def test_cards_show_price_stock_and_keys_sold(client, make_product, make_unpaid_order, pay):
    # given: 5 keys, 3 of them sold on two orders, one more held by an unpaid order
    product = make_product(keys=5, name="Game Card", price="12.50")
    pay(make_unpaid_order(product=product, quantity=2))
    pay(make_unpaid_order(product=product, quantity=1))
    assert CardKey.objects.filter(product=product, status=CardKeyStatus.DELIVERED).count() == 3
    sold_out = make_product(keys=0, name="Empty Card")
    # when
    html = client.get("/").content.decode()
    # then
    card = re.findall(r'<li class="pcard">.*?</li>', html, re.S)[0]
    assert '<span class="pcard-price">12.50 CNY</span>' in card
    assert "2 in stock" in card
    assert "3 sold" in card
    empty = re.findall(r'<li class="pcard soldout">.*?</li>', html, re.S)[0]
    assert empty.count("Sold out") == 2  # the badge on the picture and the stock line
    assert "0 sold" in empty
    assert f'href="/p/{sold_out.slug}/"' in empty


def test_sold_counts_only_delivered_keys(make_product, make_unpaid_order, pay):
    # given: one order paid (delivered), one reserved but not delivered, one unpaid
    product = make_product(keys=6)
    pay(make_unpaid_order(product=product, quantity=2))
    reserved = CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).first()
    CardKey.objects.filter(pk=reserved.pk).update(
        status=CardKeyStatus.RESERVED, order_line=make_unpaid_order(product=product).lines.get())
    # when
    (listed,) = products_for_sale()
    # then
    assert listed.sold == 2
    assert listed.stock == 3  # 6 − 2 delivered − 1 reserved; the unpaid order placed no hold


def test_the_catalogue_takes_a_bounded_number_of_queries_however_many_products(
    client, make_product, make_unpaid_order, pay, django_assert_max_num_queries
):
    # given: 12 products in 3 categories, with keys and sales
    categories = [Category.objects.create(slug=f"c{i}", name=f"C{i}") for i in range(3)]
    for n in range(12):
        product = make_product(keys=2, category=categories[n % 3])
        if n % 4 == 0:
            pay(make_unpaid_order(product=product))
    client.get("/")  # the session and language set up once
    # when / then: the same few queries for 12 products as for one
    with django_assert_max_num_queries(6):
        response = client.get("/", {"q": "product"})
    assert len(_cards(response.content.decode())) == 12
    with django_assert_max_num_queries(6):
        client.get("/")


def test_the_product_page_shows_price_stock_and_sold(client, make_product, make_unpaid_order, pay):
    product = make_product(keys=4, name="Game Card", price="30.00")
    pay(make_unpaid_order(product=product, quantity=3))
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert '<p class="price">30.00 CNY</p>' in html
    assert "1 in stock" in html and "3 sold" in html


def test_a_sold_out_product_page_says_so_and_offers_no_checkout(client, make_product):
    product = make_product(keys=0, name="Gone")
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert "This product is sold out right now." in html
    assert 'name="buy"' not in html


# --- pictures on the pages --------------------------------------------------------------


def _with_picture(product, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    out = io.BytesIO()
    Image.new("RGB", (1600, 1200), (30, 90, 160)).save(out, format="PNG")
    images.product_image_apply(product=product, data=out.getvalue())
    product.save()
    return product


def test_cards_show_the_thumbnail_with_alt_size_and_lazy_loading_below_the_first_row(
    client, make_product, settings, tmp_path
):
    # given: six products with pictures, one without
    for n in range(6):
        _with_picture(make_product(keys=1, name=f"Card {n}"), settings, tmp_path)
    plain = make_product(keys=1, name="zebra pass")
    # when
    html = client.get("/").content.decode()
    # then
    pictures = re.findall(r"<img [^>]*>", html)
    assert len(pictures) == 6
    for n, tag in enumerate(pictures):
        assert f'alt="Card {n}"' in tag and 'width="480" height="360"' in tag
        assert ('loading="lazy"' in tag) == (n >= 4)
    # the one without: a tile with its initial, not a broken picture
    assert f'<span class="tile tint-{plain.pk % 6}" aria-hidden="true">Z</span>' in html


def test_the_product_page_shows_its_picture_and_shares_it_as_og_image(client, make_product, settings, tmp_path):
    # given
    settings.SITE_URL = "https://shop.example.com"
    product = _with_picture(make_product(keys=1, name="Game Card"), settings, tmp_path)
    # when
    html = client.get(f"/p/{product.slug}/").content.decode()
    # then
    assert (f'<img src="/media/{product.image.name}" alt="Game Card" width="1200" height="900" '
            'fetchpriority="high">') in html
    assert f'<meta property="og:image" content="https://shop.example.com/media/{product.image.name}">' in html
    assert '<meta property="og:image:width" content="1200">' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html


def test_without_a_picture_the_product_page_shows_a_tile_and_shares_the_shop_icon(client, make_product, settings):
    settings.SITE_URL = "https://shop.example.com"
    product = make_product(keys=1, name="game card")
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert '<span class="tile tile-large' in html and ">G</span>" in html
    assert '<meta property="og:image" content="https://shop.example.com/static/shop/icon-192.png">' in html


# --- Markdown ----------------------------------------------------------------------------


def test_markdown_is_rendered_and_anything_unsafe_removed():
    # when
    html = markdown_html(
        "# Title\n\n**bold** and *it*\n\n- one\n- two\n\n"
        "<script>alert('x')</script>\n\n"
        '<img src="x" onerror="alert(1)">\n\n'
        '<p onclick="steal()">click</p>\n\n'
        "[bad](javascript:alert(1)) [also bad](JaVaScRiPt:alert(2)) "
        '<a href="javascript:alert(3)">html bad</a> [good](https://example.com/help)\n\n'
        "<iframe src=\"https://evil.example\"></iframe><style>body{display:none}</style>"
    )
    # then
    assert "<h3>Title</h3>" in html
    assert "<strong>bold</strong> and <em>it</em>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html
    assert '<a href="https://example.com/help" rel="noopener nofollow">good</a>' in html
    lowered = html.lower()
    for unsafe in ("<script", "alert(", "onerror", "onclick", "javascript:", "<img", "<iframe", "<style",
                   "display:none"):
        assert unsafe not in lowered, unsafe
    assert "<p>click</p>" in html
    assert "<a rel=\"noopener nofollow\">bad</a>" in html


def test_the_product_page_renders_both_descriptions_and_usage_notes_as_sanitised_markdown(client, make_product):
    # given
    product = make_product(
        keys=1, description="**Fast** delivery <script>alert(1)</script>",
        description_zh="**秒发** <img src=x onerror=alert(1)>",
        usage_notes="1. Open [the site](https://example.com)\n2. Paste", usage_notes_zh="打开 *设置*")
    # when
    en = client.get(f"/p/{product.slug}/").content.decode()
    zh = client.get(f"/p/{product.slug}/", **ZH).content.decode()
    # then
    assert "<strong>Fast</strong> delivery" in en and "<script>alert" not in en
    assert '<a href="https://example.com" rel="noopener nofollow">the site</a>' in en
    assert "<ol>" in en
    assert "<strong>秒发</strong>" in zh and "onerror" not in zh
    assert "<em>设置</em>" in zh
    # the meta description is the text, without tags or Markdown marks
    assert '<meta name="description" content="Fast delivery">' in en


def test_the_order_page_shows_usage_notes_as_sanitised_markdown(client, make_product, make_unpaid_order, pay,
                                                                 run_worker):
    from shop.access import order_link_sign

    # given
    product = make_product(keys=1, usage_notes="Go to **Settings** <script>alert(1)</script>")
    order = pay(make_unpaid_order(product=product))
    run_worker()
    # when
    client.get(f"/orders/{order.order_no}/?s={order_link_sign(order.order_no)}")
    html = client.get(f"/orders/{order.order_no}/").content.decode()
    # then
    assert "Go to <strong>Settings</strong>" in html
    assert "<script>alert(1)" not in html


# --- payment icons -----------------------------------------------------------------------


def test_the_product_page_shows_the_icons_of_the_methods_offered_for_it_only(client, make_product, settings):
    # given: the sandbox for everything, WeChat only for another product, Alipay for this one
    product, other = make_product(keys=1), make_product(keys=1)
    for code, name, name_zh, icon, channel, for_product in (
            ("ali", "Alipay", "支付宝", "alipay", "alipay", product), ("wx", "WeChat Pay", "微信支付", "wechat", "wxpay", other)):
        method = payment_method_save(method=PaymentMethod(
            code=code, provider="epay", channel=channel, name=name, name_zh=name_zh, icon=icon, merchant_id="2002",
            gateway_url="https://pay2.example.com/submit.php", position=1), credentials={"key": "SECONDKEY"})
        method.products.set([for_product])
    methods_forget()
    # when
    html = client.get(f"/p/{product.slug}/").content.decode()
    # then
    icons = re.findall(r'<div class="pay-icons">.*?</div>', html, re.S)[0]
    assert re.findall(r'<img src="/static/payments/icons/(\w+)\.svg" alt="([^"]+)"', icons) == [
        ("alipay", "Alipay"), ("other", "Sandbox (test payment)")]
    assert "wechat" not in icons
    zh = client.get(f"/p/{product.slug}/", **ZH).content.decode()
    assert 'alt="支付宝"' in re.findall(r'<div class="pay-icons">.*?</div>', zh, re.S)[0]


def test_with_no_method_the_buyer_sees_a_sentence_not_a_code(client, make_product, settings):
    settings.SANDBOX_ENABLED = False
    methods_forget()
    product = make_product(keys=2)
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert "<code>" not in html
    assert '<div class="pay-icons">' not in html
    alert = re.findall(r'<p class="alert" role="alert" data-code="NO_PAYMENT_METHOD">(.*?)</p>', html, re.S)[0]
    assert "No way to pay is available for this product right now." in alert
    assert "NO_PAYMENT_METHOD" not in alert


# --- related products --------------------------------------------------------------------


def test_related_products_same_category_first_in_stock_first_at_most_four(shelf, make_product):
    # given: more products, so that the four must be chosen
    games = Category.objects.get(slug="games")
    make_product(keys=1, slug="zeta", name="Zeta Game", category=games)
    make_product(keys=1, slug="alpha", name="Alpha Other")
    # when
    related = products_related(product=shelf["steam"])
    # then: games in stock, games sold out, then the others in stock by name
    assert [p.slug for p in related] == ["zeta", "points", "alpha", "loose"]
    assert shelf["steam"] not in related and shelf["hidden"] not in related


def test_the_product_page_lists_related_products(client, shelf):
    html = client.get("/p/vpn/").content.decode()
    related = re.findall(r'<section class="related".*?</section>', html, re.S)[0]
    # the same category (software), then the others in stock by name, then the sold out
    assert _cards(related) == ["Office Key", "Mystery Box", "Steam Card", "Game Points"]


# --- content per language -----------------------------------------------------------------


@pytest.mark.parametrize("language, fields, expected", [
    ("zh-hans", {"name": "Card", "name_zh": "点卡"}, "点卡"),
    ("zh-hans", {"name": "Card", "name_zh": ""}, "Card"),  # zh falls back to en
    ("en", {"name": "Card", "name_zh": "点卡"}, "Card"),
])
def test_names_follow_the_language_with_a_fallback(language, fields, expected):
    product = Product(slug="x", price=Decimal("1.00"), **fields)
    with translation.override(language):
        assert product.display_name == expected


def test_descriptions_fall_back_both_ways():
    product = Product(slug="x", name="Card", price=Decimal("1.00"), description="", description_zh="中文说明",
                      usage_notes="English notes", usage_notes_zh="")
    with translation.override("en"):
        assert product.display_description == "中文说明"  # en falls back to zh
        assert product.display_usage_notes == "English notes"
    with translation.override("zh-hans"):
        assert product.display_description == "中文说明"
        assert product.display_usage_notes == "English notes"  # zh falls back to en
    category = Category(slug="c", name="Games", name_zh="")
    with translation.override("zh-hans"):
        assert category.display_name == "Games"


def test_every_buyer_page_uses_the_chinese_names_in_chinese(client, shelf):
    # when
    catalogue = client.get("/", **ZH).content.decode()
    product = client.get("/p/steam/", **ZH).content.decode()
    # then
    assert _cards(catalogue) == ["游戏点券", "蒸汽卡", "办公软件", "加速器", "盲盒"]
    assert ">游戏 <span class=\"count\">(2)</span>" in catalogue
    assert "<h1>蒸汽卡</h1>" in product and "<title>蒸汽卡</title>" in product
    assert '<meta property="og:title" content="蒸汽卡">' in product
    assert '<a href="/?c=games">游戏</a>' in product


# --- the JSON API ---------------------------------------------------------------------------


def test_the_api_product_list_keeps_its_fields_and_adds_both_names_sales_and_pictures(
    client, make_product, make_unpaid_order, pay, settings, tmp_path
):
    # given
    settings.SITE_URL = "https://shop.example.com"
    games = Category.objects.create(slug="games", name="Games")
    product = make_product(keys=3, slug="a-card", name="A card", name_zh="A 卡", price="12.50", category=games)
    pay(make_unpaid_order(product=product))
    _with_picture(product, settings, tmp_path)
    make_product(slug="b-card", name="B card")
    # when
    en = client.get("/api/v1/products").json()
    zh = client.get("/api/v1/products", **ZH).json()
    # then
    assert en == [
        {"slug": "a-card", "name": "A card", "kind": "unique", "price": "12.50", "currency": "CNY", "stock": 2,
         "variants": [], "name_en": "A card", "name_zh": "A 卡", "sold": 1, "category": "games",
         "image": f"https://shop.example.com/media/{product.image.name}",
         "thumbnail": f"https://shop.example.com/media/{product.image_thumb}"},
        {"slug": "b-card", "name": "B card", "kind": "unique", "price": "10.00", "currency": "CNY", "stock": 0,
         "variants": [], "name_en": "B card", "name_zh": "", "sold": 0, "category": None, "image": None, "thumbnail": None},
    ]
    assert [p["name"] for p in zh] == ["A 卡", "B card"]
    assert "Accept-Language" in client.get("/api/v1/products")["Vary"]


def test_the_openapi_product_schema_lists_the_new_fields():
    from shop.ops.openapi import DOCUMENT

    schema = DOCUMENT["components"]["schemas"]["Product"]
    assert schema["required"] == ["slug", "name", "kind", "price", "currency", "stock", "variants"]
    assert {"name_en", "name_zh", "sold", "category", "image", "thumbnail"} <= set(schema["properties"])
