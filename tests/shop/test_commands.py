"""manage.py demo and import_keys."""

from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from inventory.models import CardKey, CardKeyStatus, ImportBatch
from shop.management.commands.demo import DEMO_PRODUCTS
from shop.models import Product

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_demo_is_idempotent_and_prints_a_random_admin_password():
    # when
    first = _run("demo")
    second = _run("demo")
    # then: every demo product (a product with variants: each variant) topped up
    # to its stock (one is left sold out on purpose)
    sold = [(spec["slug"], spec) for spec in DEMO_PRODUCTS if "variants" not in spec and spec.get("kind") != "manual"]
    sold += [(f"{spec['slug']}-{v['slug']}", v) for spec in DEMO_PRODUCTS for v in spec.get("variants", [])]
    assert Product.objects.count() == len(DEMO_PRODUCTS) + sum(len(s.get("variants", [])) for s in DEMO_PRODUCTS)
    for slug, spec in sold:
        product = Product.objects.get(slug=slug)
        expected = spec.get("stock", 25)
        assert CardKey.objects.filter(product=product, status=CardKeyStatus.AVAILABLE).count() == expected
    # one product of each kind, and one with variants
    assert set(Product.objects.values_list("kind", flat=True)) == {"unique", "reusable", "manual"}
    manual = Product.objects.get(kind="manual")
    assert list(manual.manual_fields.values_list("key", flat=True)) == ["account", "server"]
    assert not CardKey.objects.filter(product=manual).exists()
    assert Product.objects.filter(slug="ai-chat-plus").get().variants.count() == 3
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    password = first.split("password ")[1].split(" ")[0]
    # django-axes (admin login throttling) needs the login request to authenticate.
    assert authenticate(RequestFactory().post("/admin/login/"), username="admin", password=password) is not None
    assert "user 'admin' exists" in second and "password " + password not in second
    assert second.count("0 keys added, 25 available") == len([s for _, s in sold if "stock" not in s])


def test_demo_admin_password_differs_each_time_it_is_created():
    # given
    first = _run("demo").split("password ")[1].split(" ")[0]
    get_user_model().objects.all().delete()
    # when
    second = _run("demo").split("password ")[1].split(" ")[0]
    # then
    assert first != second and len(second) >= 12


def test_demo_tops_up_stock_after_sales():
    # given
    _run("demo")
    product = Product.objects.get(slug="vpn-pro-1y")
    CardKey.objects.filter(product=product, pk__in=CardKey.objects.filter(product=product).values("pk")[:5]).update(
        status=CardKeyStatus.VOID
    )
    # when
    out = _run("demo")
    # then
    assert "vpn-pro-1y: exists, 5 keys added, 25 available" in out


def test_import_keys_reports_added_duplicates_and_blanks(tmp_path, make_product):
    # given
    product = make_product(slug="gift")
    path = tmp_path / "keys.txt"
    path.write_text("AAA-1\nBBB-2\n\nAAA-1\r\n  CCC-3  \n", encoding="utf-8")
    # when
    out = _run("import_keys", "--product", "gift", str(path))
    again = _run("import_keys", "--product", "gift", str(path))
    # then
    first_batch = ImportBatch.objects.order_by("id").first().pk
    assert out.splitlines() == [
        "line 4: DUPLICATE_IN_FILE same key as line 1",
        f"gift: import #{first_batch}: 3 added, 1 duplicate, 0 invalid, 1 blank (5 lines)",
    ]
    assert again.splitlines()[-1] == f"gift: import #{first_batch + 1}: 0 added, 4 duplicate, 0 invalid, 1 blank (5 lines)"
    assert again.splitlines()[0] == f"line 1: DUPLICATE_IN_STOCK already in stock (import #{first_batch}, line 1)"
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == ["AAA-1", "BBB-2", "CCC-3"]


def test_import_keys_errors_carry_a_code(tmp_path, make_product):
    # given
    make_product(slug="gift")
    binary = tmp_path / "keys.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    # when / then
    with pytest.raises(CommandError, match="^PRODUCT_NOT_FOUND"):
        _run("import_keys", "--product", "nope", str(binary))
    with pytest.raises(CommandError, match="^FILE_UNREADABLE"):
        _run("import_keys", "--product", "gift", str(tmp_path / "missing.txt"))
    with pytest.raises(CommandError, match="^FILE_NOT_UTF8: line 1 "):
        _run("import_keys", "--product", "gift", str(binary))
    assert CardKey.objects.count() == 0
