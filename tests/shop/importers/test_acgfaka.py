"""manage.py import_from acg-faka, from a dump built on acg-faka's own CREATE TABLEs (fixtures/acgfaka.sql)."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from delivery.models import Delivery
from inventory.models import CardKey, CardKeyStatus
from shop.models import Category, Coupon, CouponKind, ImportRecord, Order, OrderStatus, Product, ProductKind

pytestmark = pytest.mark.django_db

DUMP = Path(__file__).parent / "fixtures" / "acgfaka.sql"


def import_from(*args, capture) -> str:
    out = StringIO()
    with capture(execute=True):
        call_command("import_from", "acg-faka", "--dump", str(DUMP), *args, stdout=out)
    return out.getvalue()


def row(output: str, entity: str) -> list[int]:
    line = next(line for line in output.splitlines() if line.split()[:1] == [entity])
    return [int(n) for n in line.split()[1:]]


def test_a_dry_run_writes_nothing(django_capture_on_commit_callbacks):
    # when
    output = import_from("--dry-run", capture=django_capture_on_commit_callbacks)
    # then
    assert row(output, "orders") == [5, 0, 0, 3]
    assert (Product.objects.count(), Order.objects.count(), CardKey.objects.count(), ImportRecord.objects.count()) == (
        0, 0, 0, 0)


def test_the_import_maps_acg_faka_products_coupons_and_keys(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: categories (nesting flattened), products with the note shown with their keys
    assert row(output, "categories") == [2, 0, 0, 0]
    assert row(output, "products") == [4, 0, 0, 1]
    assert "1 supplied by another shop (共享/对接): it has no keys of its own" in output
    netflix = Product.objects.get(name="Netflix 月卡")
    assert (netflix.price, netflix.max_per_order, netflix.usage_notes_zh, netflix.active) == (
        Decimal("30.00"), 5, "登录后在账户页兑换", True)
    assert list(netflix.tiers.order_by("min_quantity").values_list("min_quantity", "percent_off")) == [
        (3, Decimal("6.67")), (10, Decimal("16.67"))]
    spotify = Product.objects.get(name="Spotify")
    assert spotify.active is False and spotify.category == Category.objects.get(name='会员 "VIP"')  # category off
    # coupons: an amount, a share of the price, one for a category's products
    assert row(output, "coupons") == [5, 0, 0, 0]
    acg10, pct20, all5 = (Coupon.objects.get(code=code) for code in ("ACG10", "PCT20", "ALL5"))
    assert (acg10.kind, acg10.value, acg10.usage_limit, acg10.used_count, acg10.expires_at.isoformat()) == (
        CouponKind.FIXED, Decimal("4.00"), 5, 1, "2029-12-31T16:00:00+00:00")  # midnight in Asia/Shanghai
    assert (pct20.kind, pct20.value, sorted(pct20.products.values_list("name", flat=True))) == (
        CouponKind.PERCENT, Decimal("20.00"), ["Game Top-up 代充", netflix.name, "Office 365"])  # its category's
    assert (all5.active, all5.products.count()) == (False, 0)
    # keys: a locked key stays there; SKU options a product does not have are
    # ignored, as acg-faka ignores them (NFX-SKU-0011 sells as a plain Netflix key)
    assert row(output, "keys") == [5, 0, 1, 10]
    assert "1 locked in the source" in output
    assert sorted(key.secret for key in CardKey.objects.filter(
        status=CardKeyStatus.AVAILABLE, product=netflix)) == ["NFX-0003-CCCC", "NFX-SKU-0011"]


def test_paid_orders_come_with_the_cards_that_named_them(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then
    assert row(output, "orders") == [5, 0, 0, 3]
    first = Order.objects.get(order_no="2023060210000000001")
    assert (first.status, first.amount, first.coupon_code, first.email) == (
        OrderStatus.DELIVERED, Decimal("56.00"), "ACG10", "fan@example.com")
    assert sorted(key.secret for key in first.lines.get().card_keys.all()) == ["NFX-0001-AAAA", "NFX-0002-BBBB"]
    # a buyer who left a QQ number: no email, the contact kept on the timeline
    qq = Order.objects.get(order_no="2023060410000000006")
    assert qq.email == "" and qq.events.get(type="CREATED").data["contact"] == "12345678"
    assert qq.lines.get().card_keys.get().secret == "NFX-0009-EEEE\\path"
    # the order whose keys ran out there (acg-faka still marks it delivered) stays there
    assert "its keys cannot be told apart in the source (fewer or more than its quantity)" in output
    assert Delivery.objects.count() == 0
    assert all(django_rq.get_queue(name).count == 0 for name in settings.RQ_QUEUES)


def test_running_it_again_changes_nothing_and_the_audit_stays_clean(django_capture_on_commit_callbacks):
    # given
    import_from(capture=django_capture_on_commit_callbacks)
    before = (Product.objects.count(), Coupon.objects.count(), Order.objects.count(), CardKey.objects.count())
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then
    assert (Product.objects.count(), Coupon.objects.count(), Order.objects.count(), CardKey.objects.count()) == before
    assert [row(output, name)[:2] for name in ("categories", "products", "coupons", "orders", "keys")] == [
        [0, 2], [0, 4], [0, 5], [0, 5], [0, 5]]
    audit = StringIO()
    call_command("audit", stdout=audit)
    assert "all invariants hold" in audit.getvalue()


def test_a_wrong_table_prefix_finds_nothing_to_import(django_capture_on_commit_callbacks):
    # when
    output = import_from("--prefix", "faka_", capture=django_capture_on_commit_callbacks)
    # then
    assert row(output, "products") == [0, 0, 0, 0] and Product.objects.count() == 0


def test_a_missing_dump_is_a_clear_error():
    with pytest.raises(CommandError, match="DUMP_UNREADABLE: no such file"):
        call_command("import_from", "acg-faka", "--dump", "/nonexistent/shop.sql", stdout=StringIO())


def test_a_manual_product_comes_as_manual_with_what_staff_delivered(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: delivery_way 1 is a manual product here
    topup = Product.objects.get(name="Game Top-up 代充")
    assert topup.kind == ProductKind.MANUAL
    # its delivered order comes as history, what staff delivered there as its content
    order = Order.objects.get(order_no="2023060510000000007")
    content = order.lines.get().card_keys.get()
    assert (order.status, content.status, content.secret) == (
        OrderStatus.DELIVERED, CardKeyStatus.DELIVERED, "已充值到游戏账号 10001")
    # the order still waiting for staff there stays there
    assert "orders: 1 paid but still waiting for staff in the source: finish it there" in output
    assert not Order.objects.filter(order_no="2023060310000000004").exists()


def test_each_kind_of_a_product_comes_as_its_variant_with_its_keys_orders_and_coupons(
        django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: Spotify's 种类 (月卡=15, 年卡=150) are its variants, each with its own name and price
    assert row(output, "variants") == [6, 0, 0, 0]  # 2 here, 4 of Office 365's SKU options
    spotify = Product.objects.get(name="Spotify", parent__isnull=True)
    month, year = (spotify.variants.get(name=name) for name in ("月卡", "年卡"))
    assert (month.price, year.price, year.name_zh, year.kind) == (Decimal("15.00"), Decimal("150.00"), "年卡", "unique")
    assert (year.category, year.currency, year.active) == (spotify.category, spotify.currency, spotify.active)
    # the 年卡 key for sale is the 年卡 variant's; a key of no 种类 would never sell here: left out, said why
    assert list(CardKey.objects.filter(product=year, status=CardKeyStatus.AVAILABLE).values_list(
        "import_line", flat=True)) == [6]
    assert not CardKey.objects.filter(product=spotify).exists()
    assert "keys: 1 of no 种类 while its product has 种类 (its variants here): left out" in output
    # the 年卡 order is the 年卡 variant's, with its key
    line = Order.objects.get(order_no="2023060310000000005").lines.get()
    assert (line.product, line.card_keys.get().secret) == (year, "SPOT-YEAR-0000")
    # a coupon limited to the 年卡 is limited to that variant
    assert list(Coupon.objects.get(code="YEARONLY").products.all()) == [year]
    # and a re-run adds no second variant
    again = import_from(capture=django_capture_on_commit_callbacks)
    assert row(again, "variants") == [0, 6, 0, 0] and spotify.variants.count() == 2
