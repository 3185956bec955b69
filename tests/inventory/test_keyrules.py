"""Per-product key rules: what counts as the same key, and what format is allowed."""

import pytest

from inventory.keyrules import KeyRules, format_regex_check

FORMAT = r"^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$"


@pytest.mark.parametrize(
    "rules, a, b",
    [
        (KeyRules(), "AB  CD", "AB CD"),
        (KeyRules(casefold=True), "abcd-efgh", "ABCD-EFGH"),
        (KeyRules(strip_separators="- "), "ABCD-EFGH", "ABCD EFGH"),
        (KeyRules(fold_confusables=True), "AB0O-1IL", "ABOO-l1i"),
    ],
)
def test_rules_make_variants_the_same_key(rules, a, b):
    assert rules.normalise(a) == rules.normalise(b)


def test_default_rules_keep_case_and_separators():
    rules = KeyRules()
    assert rules.normalise("abcd-efgh") != rules.normalise("ABCD-EFGH")
    assert rules.normalise("ABCD-EFGH") != rules.normalise("ABCDEFGH")


@pytest.mark.parametrize(
    "key, problem",
    [
        ("ABCD-EFGH-JKLM", None),
        ("ABCDE-FGH-JKLM", "character 5 ('E') is not allowed there"),
        ("ABCD-EF#H-JKLM", "character 8 ('#') is not allowed there"),
        ("abcd-EFGH-JKLM", "character 1 ('a') is not allowed there"),
        ("ABCD-EFGH", "too short: 9 characters, the format needs more"),
        ("ABCD-EFGH-JKLM-", "character 15 ('-') is not allowed there"),
    ],
)
def test_format_problem_points_at_the_character(key, problem):
    assert KeyRules(format_regex=FORMAT).format_problem(key) == problem


def test_no_format_accepts_anything():
    assert KeyRules().format_problem("anything at all") is None


def test_format_regex_check():
    assert format_regex_check(FORMAT) is None
    assert format_regex_check("^[A-Z").startswith("not a valid regular expression")
