"""acg-faka's SKU options and manual products' forms (widget), brought across
from the dump built on acg-faka's own CREATE TABLEs (fixtures/acgfaka.sql)."""

from decimal import Decimal

import pytest

from inventory.models import CardKey, CardKeyStatus
from shop.importers.acgfaka_config import config_read, variants_of, widget_fields
from shop.models import Coupon, ManualFieldType, Order, OrderStatus, Product
from shop.services.manual import ManualFieldError, manual_answers_clean, manual_answers_read
from tests.shop.importers.test_acgfaka import import_from, row

pytestmark = pytest.mark.django_db

FAMILY_2Y = "版本: 家庭版 · 期限: 2年"


def test_every_choice_of_sku_options_is_a_variant_at_the_price_it_cost_there(django_capture_on_commit_callbacks):
    # given: Office 365 at 20.00, 版本 个人版 +0 / 家庭版 +10, 期限 1年 +0 / 2年 +15, from 5 pieces 18.00
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: one variant per choice (2 × 2), priced as acg-faka priced it
    office = Product.objects.get(name="Office 365", parent__isnull=True)
    assert sorted(office.variants.values_list("name", "price")) == [
        ("版本: 个人版 · 期限: 1年", Decimal("20.00")), ("版本: 个人版 · 期限: 2年", Decimal("35.00")),
        ("版本: 家庭版 · 期限: 1年", Decimal("30.00")), (FAMILY_2Y, Decimal("45.00"))]
    assert row(output, "variants") == [6, 0, 0, 0]  # with Spotify's two 种类
    # the wholesale price keeps the options' premium: 18 + 25 = 43 of 45 from 5 pieces
    family_2y = office.variants.get(name=FAMILY_2Y)
    assert list(family_2y.tiers.values_list("min_quantity", "percent_off")) == [(5, Decimal("4.44"))]
    assert not office.tiers.exists()  # the product itself is sold only through its variants
    # each key for sale is its options' variant's, whatever the order of the JSON
    assert list(CardKey.objects.filter(product=family_2y, status=CardKeyStatus.AVAILABLE).values_list(
        "import_line", flat=True)) == [13]
    assert CardKey.objects.filter(product__name="版本: 个人版 · 期限: 1年", import_line=12).exists()
    # a key without options, or with one the product does not offer, would never sell: left out, said why
    assert "keys: 1 of no 版本 option while its product has SKU options: left out" in output
    assert "keys: 1 its 版本 '企业版' is not among its product's SKU options" in output
    # the past order is the variant's, with its key
    line = Order.objects.get(order_no="2023060610000000008").lines.get()
    assert (line.product, line.unit_price, line.card_keys.get().secret) == (family_2y, Decimal("45.00"),
                                                                            "OFFICE-F2-SOLD")
    # a coupon limited to 家庭版 is good for both 家庭版 variants
    assert sorted(Coupon.objects.get(code="FAMILY").products.values_list("name", flat=True)) == [
        "版本: 家庭版 · 期限: 1年", FAMILY_2Y]
    # and a re-run makes no variant twice
    again = import_from(capture=django_capture_on_commit_callbacks)
    assert row(again, "variants") == [0, 6, 0, 0] and office.variants.count() == 4


def test_a_race_keeps_its_own_wholesale_prices():
    # given: 年卡 at 150, from 3 pieces 140 (category_wholesale); the product's [wholesale] is not for it
    config = config_read("[category]\n月卡=15\n年卡=150\n[category_wholesale]\n年卡.3=140\n[wholesale]\n2=1")
    # when
    variants, unmade = variants_of(price=Decimal("15"), config=config)
    # then
    assert unmade == "" and [(v.name, v.price, v.tiers) for v in variants] == [
        ("月卡", Decimal("15.00"), []), ("年卡", Decimal("150.00"), [(3, Decimal("140.00"))])]


def test_too_many_choices_are_not_made_into_variants():
    # given: 5 groups of 3 options (243 choices)
    config = config_read("[sku]\n" + "\n".join(f"g{g}.o{o}=1" for g in range(5) for o in range(3)))
    # when
    variants, unmade = variants_of(price=Decimal("10"), config=config)
    # then
    assert variants == [] and "more than 100 choices" in unmade


def test_a_manual_products_form_comes_as_its_questions_with_their_checks(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: text (with its check and message), select (its labels), textarea; the captcha is no question
    topup = Product.objects.get(name="Game Top-up 代充")
    fields = list(topup.manual_fields.order_by("position"))
    assert [(f.key, f.label_zh, f.type, f.required, f.choice_list) for f in fields] == [
        ("account", "游戏账号", ManualFieldType.TEXT, True, []),
        ("server", "区服", ManualFieldType.SELECT, False, ["一区", "二区"]),
        ("note", "留言", ManualFieldType.TEXT, False, [])]
    assert (fields[0].pattern, fields[0].pattern_message_zh, fields[0].help_text_zh) == (
        "^[0-9]{5,12}$", "请输入正确的游戏账号", "请输入账号")
    assert "widget 'captcha' is a custom container (e.g. a captcha), not a question: left out" in output
    # the check runs at checkout, with the owner's message
    with pytest.raises(ManualFieldError) as refused:
        manual_answers_clean(product=topup, answers={"account": "abc"})
    assert (refused.value.code, refused.value.reason, refused.value.key) == ("FIELD_INVALID", "no_match", "account")
    assert "请输入正确的游戏账号" in str(refused.value)
    assert manual_answers_clean(product=topup, answers={"account": "10001", "server": "一区"})[0]["value"] == "10001"
    # the delivered order keeps the buyer's answers, sealed
    order = Order.objects.get(order_no="2023060510000000007")
    assert order.status == OrderStatus.DELIVERED
    assert [(a["label"], a["value"]) for a in manual_answers_read(order=order)] == [("游戏账号", "10001"),
                                                                                 ("区服", "1")]


def test_a_form_that_cannot_be_read_is_reported_not_guessed():
    # when
    fields, notes = widget_fields('[{"cn":"QQ","name":"qq","type":"text","regex":"(unclosed","error":"x"},'
                                  '{"cn":"颜色","name":"c","type":"checkbox","regex":"","dict":"红=r,蓝=b"},'
                                  '{"cn":"?","name":"s","type":"slider"}]')
    # then: the bad check is dropped (the question stays, optional), a checkbox becomes a text answer
    assert [(f.key, f.type, f.pattern, f.required) for f in fields] == [("qq", "text", "", False),
                                                                       ("c", "text", "", False)]
    assert len(notes) == 3 and "'(unclosed') is not a regular expression here" in notes[0]
    assert "several of 红, 蓝" in notes[1] and "'slider' is not known" in notes[2]
