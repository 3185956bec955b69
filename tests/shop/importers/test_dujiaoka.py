"""manage.py import_from dujiaoka, from a dump built on dujiaoka's own CREATE TABLEs (fixtures/dujiaoka.sql)."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.core.management import call_command

from delivery.models import Delivery
from inventory.models import CardKey, CardKeyStatus, ImportBatch, KeyAuditEvent
from shop.models import (
    Category,
    Coupon,
    CouponKind,
    ImportRecord,
    Order,
    OrderEvent,
    OrderStatus,
    Product,
    QuantityTier,
)

pytestmark = pytest.mark.django_db

DUMP = Path(__file__).parent / "fixtures" / "dujiaoka.sql"
MODELS = (Category, Product, QuantityTier, Coupon, Order, OrderEvent, CardKey, ImportBatch, KeyAuditEvent, ImportRecord)


def import_from(*args, capture=None) -> str:
    out = StringIO()
    if capture is None:
        call_command("import_from", "dujiaoka", "--dump", str(DUMP), *args, stdout=out)
    else:
        with capture(execute=True):
            call_command("import_from", "dujiaoka", "--dump", str(DUMP), *args, stdout=out)
    return out.getvalue()


def row(output: str, entity: str) -> list[int]:
    """new, already imported, duplicates, skipped of ``entity`` in the printed table."""
    line = next(line for line in output.splitlines() if line.split()[:1] == [entity])
    return [int(n) for n in line.split()[1:]]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def run_audit() -> str:
    out = StringIO()
    call_command("audit", stdout=out)  # raises CommandError on any violation
    return out.getvalue()


def test_a_dry_run_reports_everything_and_writes_nothing():
    # when
    output = import_from("--dry-run")
    # then: the report is the real run's
    assert "dry run: nothing was written" in output
    assert row(output, "categories") == [2, 0, 0, 1]
    assert row(output, "products") == [4, 0, 0, 2]
    assert row(output, "orders") == [8, 0, 0, 5]
    assert row(output, "keys") == [6, 0, 2, 5]
    # and nothing is in the database
    assert set(counts().values()) == {0}


def test_the_import_brings_the_catalogue_coupons_keys_and_past_orders(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: categories, the live one first
    assert row(output, "categories") == [2, 0, 0, 1]
    assert list(Category.objects.order_by("position").values_list("name", "name_zh")) == [
        ("游戏点卡", "游戏点卡"), ("Software", "")]
    # products of every kind, with their limits and wholesale tiers
    assert row(output, "products") == [4, 0, 0, 2]
    assert dict(Product.objects.values_list("name", "kind")) == {
        "Steam 钱包充值码 ¥50": "unique", "VPN Pro 1 year": "unique", "Shared Netflix account": "reusable",
        "代充 QQ会员": "manual"}
    steam = Product.objects.get(name="Steam 钱包充值码 ¥50")
    assert (steam.price, steam.max_per_order, steam.currency, steam.active) == (Decimal("45.00"), 5, "CNY", True)
    assert steam.category.name == "游戏点卡" and steam.slug == "steam-50-1"
    assert steam.description_zh.startswith("He said \"hi\" \\ it's <b>ok</b>\r\nline two")
    assert list(steam.tiers.order_by("min_quantity").values_list("min_quantity", "percent_off")) == [
        (5, Decimal("11.11")), (10, Decimal("15.56"))]
    assert row(output, "tiers") == [2, 0, 0, 1]
    assert "1 deleted in the source" in output and "price 0: a free product cannot be sold here" in output
    # coupons: the fixed amount, its uses left, the products it is limited to (of those imported)
    assert row(output, "coupons") == [3, 0, 0, 2]
    coupon = Coupon.objects.get(code="SPRING-SALE")
    assert (coupon.code, coupon.kind, coupon.value, coupon.usage_limit, coupon.used_count) == (
        "SPRING-SALE", CouponKind.FIXED, Decimal("5.00"), 10, 0)
    assert sorted(coupon.products.values_list("name", flat=True)) == ["Shared Netflix account", steam.name]
    # keys for sale: sealed, duplicates reported (within the dump, and of a key sold on a past order)
    assert row(output, "keys") == [6, 0, 2, 5]
    assert "DUPLICATE_IN_FILE same key as key id 3" in output
    assert "key id 5 of steam-50-1: DUPLICATE_SOLD already sold" in output
    available = CardKey.objects.filter(product=steam, status=CardKeyStatus.AVAILABLE).order_by("id")
    assert [key.secret for key in available] == ["STEAM-AAAA-0003", "STEAM-'Q'-0006\\x", "卡密-中文-0008"]
    assert all(b"STEAM" not in bytes(key.secret_sealed) for key in CardKey.objects.all())
    assert "not imported yet" not in output


def test_past_orders_come_as_delivered_history_with_their_keys_and_nothing_is_sent(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: the paid and delivered orders, under the numbers their buyers know
    assert row(output, "orders") == [8, 0, 0, 5]
    assert sorted(Order.objects.values_list("order_no", flat=True)) == [
        "DJ11", "DJORDER0000000001", "DJORDER0000000002", "DJORDER0000000003", "DJORDER0000000007",
        "DJORDER0000000008", "DJORDER0000000009", "DJORDER0000000013"]
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.DELIVERED}
    first = Order.objects.get(order_no="DJORDER0000000001")
    line = first.lines.get()
    assert (first.amount, first.discount, first.coupon_code, first.email, first.client_ip) == (
        Decimal("85.00"), Decimal("5.00"), "SPRING-SALE", "buyer1@example.com", "203.0.113.5")
    assert (line.quantity, line.unit_price, line.amount) == (2, Decimal("45.00"), Decimal("85.00"))
    assert sorted(key.secret for key in line.card_keys.all()) == ["STEAM-AAAA-0001", "STEAM-AAAA-0002"]
    assert set(line.card_keys.values_list("status", flat=True)) == {CardKeyStatus.DELIVERED}
    assert first.paid_at.isoformat() == "2023-05-02T04:01:00+00:00"  # 12:01 in Asia/Shanghai
    assert list(first.events.order_by("at", "id").values_list("type", "actor")) == [
        ("CREATED", "import:dujiaoka"), ("PAID", "import:dujiaoka"), ("DELIVERED", "import:dujiaoka")]
    # a key deleted from the source's key table comes from the order itself
    third = Order.objects.get(order_no="DJORDER0000000003").lines.get().card_keys.get()
    assert third.secret == "STEAM-DELETED-0010" and third.status == CardKeyStatus.DELIVERED
    assert Order.objects.get(order_no="DJ11").client_ip == "2001:db8::1"
    assert Order.objects.get(order_no="DJORDER0000000002").client_ip is None  # "not-an-ip"
    # the orders left in the source say why
    assert "orders: 2 not paid in the source (unpaid or expired)" in output
    assert "paid but not delivered in the source (failed / abnormal): settle it there" in output
    assert "order DJORDER0000000010: a key of it was delivered on order DJORDER0000000002 too" in output
    # nothing delivered again: no delivery row, no job
    assert Delivery.objects.count() == 0
    assert all(django_rq.get_queue(name).count == 0 for name in settings.RQ_QUEUES)


def test_running_it_again_changes_nothing(django_capture_on_commit_callbacks):
    # given
    import_from(capture=django_capture_on_commit_callbacks)
    before = counts()
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then
    assert counts() == before
    assert row(output, "categories") == [0, 2, 0, 1]
    assert row(output, "products") == [0, 4, 0, 2]
    assert row(output, "coupons") == [0, 3, 0, 2]
    assert row(output, "orders") == [0, 8, 0, 5]
    assert row(output, "keys") == [0, 6, 2, 5]


def test_the_audit_is_clean_after_an_import(django_capture_on_commit_callbacks):
    # given
    import_from(capture=django_capture_on_commit_callbacks)
    # when
    output = run_audit()
    # then
    assert "all invariants hold" in output


def test_a_coupon_code_already_used_here_is_reported_as_a_duplicate(django_capture_on_commit_callbacks):
    # given: the owner made a coupon of that name here already
    mine = Coupon.objects.create(code="WELCOME", kind=CouponKind.PERCENT, value=Decimal(10))
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: theirs is left alone, the other coupon comes across
    assert row(output, "coupons") == [2, 0, 1, 2]
    assert "coupon 3: the code WELCOME is taken here already" in output
    mine.refresh_from_db()
    assert (mine.kind, mine.value, Coupon.objects.count()) == (CouponKind.PERCENT, Decimal("10.00"), 3)
