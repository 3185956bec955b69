"""Reasons, rules and signals in words (en and zh), numbers without exponents."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import translation

from riskctl.features import FEATURES
from riskctl.models import Assessment, Rule
from riskctl.reasons import RULE_TEXTS, baselines, number_plain, reasons_explain, rule_help, rule_label, wait_words
from riskctl.services.rules import _evaluate

pytestmark = pytest.mark.django_db

REASONS = [
    {"rule": "disposable-email", "points": 25, "detail": "disposable_email = 1 (== 1)"},
    {"rule": "velocity-ip-1h", "points": 30, "detail": "orders_ip_1h = 4 (>= 3)"},
    {"rule": "trusted-buyer", "points": -50, "detail": "trusted_buyer = 1 (== 1)"},
    {"rule": "big-order", "points": "REVIEW", "detail": "amount = 297.0 (>= 2E+2)"},
]


def _checkouts(n, **features):
    first = Assessment.objects.count()
    Assessment.objects.bulk_create(
        Assessment(ref=f"R-T{first + i:04d}", stage="CHECKOUT", decision="ALLOW", score=0, features=features) for i in range(n)
    )


def test_numbers_are_plain():
    assert [number_plain(Decimal("2E+2")), number_plain(4.0), number_plain("0.50"), number_plain(297.0, 2),
            number_plain(Decimal("-1.25"))] == ["200", "4", "0.5", "297.00", "-1.25"]


def test_waits_in_words():
    assert [wait_words(timedelta(seconds=40)), wait_words(timedelta(minutes=7)),
            wait_words(timedelta(hours=2, minutes=5)), wait_words(timedelta(days=3, hours=4))] == \
        ["40 s", "7 min", "2 h 5 min", "3 d 4 h"]
    with translation.override("zh-hans"):
        assert wait_words(timedelta(hours=2, minutes=5)) == "2 小时 5 分钟"


def test_reasons_in_english_heaviest_first_with_the_usual_value():
    # given: a hard review rule, and 5 recent checkouts that usually had 1 order per IP in the hour
    Rule.objects.create(code="big-order", description="Large order", feature="amount", operator=">=",
                        threshold=Decimal("200"), action="REVIEW")
    _checkouts(5, orders_ip_1h=1, amount=10)
    # when
    lines = reasons_explain(reasons=REASONS, currency="CNY")
    # then
    assert [line.rule for line in lines] == ["big-order", "velocity-ip-1h", "disposable-email", "trusted-buyer"]
    assert [line.sentence for line in lines] == [
        "The order costs 297.00 CNY; usually 10.00 CNY",
        "4 orders from this IP address in the last hour; usually 1",
        "The email is a throw-away (disposable) address",
        "A trusted returning buyer (3 or more old delivered orders, no disputes)",
    ]
    assert [line.effect for line in lines] == ["sends to review", "+30 points", "+25 points", "−50 points"]
    assert lines[0].label == "Large order"
    assert lines[0].basis == ("usually: the median of 5 checkouts in the last 30 days; "
                              "the rule flags at least 200.00")
    assert lines[1].label == "Many orders from one IP address in an hour"
    assert all("E+" not in line.sentence + line.basis for line in lines)


def test_reasons_in_chinese():
    with translation.override("zh-hans"):
        lines = reasons_explain(reasons=REASONS[:2], currency="CNY")
    # then: too few checkouts for "usually": only the rule's threshold is given
    assert [line.sentence for line in lines] == ["最近 1 小时内，该IP 地址下了 4 单", "该邮箱是一次性（临时）邮箱"]
    assert [line.effect for line in lines] == ["+30 分", "+25 分"]
    assert lines[0].basis == "规则阈值：至少 3"
    assert lines[0].label == "同一 IP 地址一小时内下单过多"


def test_baseline_is_the_median_of_recent_checkouts():
    _checkouts(3, orders_ip_1h=1)
    _checkouts(2, orders_ip_1h=9)
    assert baselines(features=["orders_ip_1h", "disposable_email"]) == (5, {"orders_ip_1h": Decimal("1")})


def test_rule_details_do_not_use_exponents():
    # given
    rule = Rule(code="big", description="big", feature="amount", operator=">=", threshold=Decimal("2E+2"),
                action="SCORE", points=10)
    # when
    verdict = _evaluate(features={"amount": 297.0}, product_id=None, config=([rule], {}, {}))
    # then
    assert verdict.reasons == [{"rule": "big", "points": 10, "detail": "amount = 297.00 (>= 200)"}]


def test_every_feature_and_default_rule_has_words_in_both_languages():
    for lang in ("en", "zh-hans"):
        with translation.override(lang):
            for name, info in FEATURES.items():
                assert str(info.label) and str(info.help) and str(info.group), name
            for rule in Rule.objects.all():
                assert rule.code in RULE_TEXTS and rule_label(rule) and rule_help(rule), rule.code
    with translation.override("zh-hans"):
        assert str(FEATURES["orders_ip_1h"].label) == "最近 1 小时内该IP 地址的订单数"
        assert rule_help(Rule.objects.get(code="velocity-ip-1h")).endswith("“最近 1 小时内该IP 地址的订单数”至少 10 时命中。")


def test_rule_form_offers_features_by_label_with_help(admin_client):
    rule = Rule.objects.get(code="disposable-email")
    page = admin_client.get(f"/admin/riskctl/rule/{rule.pk}/change/").content.decode()
    assert '<optgroup label="How often (velocity)">' in page
    assert '<option value="orders_ip_1h" data-help="How many orders were placed with the buyer&#x27;s IP address' in page
    assert ">Orders from this IP address in the last hour</option>" in page
    assert "1 if the email is from a throw-away (disposable) mailbox provider, else 0." in page
    assert "riskctl/rule_form.js" in page
    listing = admin_client.get("/admin/riskctl/rule/").content.decode()
    assert "Throw-away email address" in listing and "equal to 1" in listing and "1.00" not in listing
