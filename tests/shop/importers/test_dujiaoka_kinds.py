"""import_from dujiaoka brings reusable keys (循环卡密, ``is_loop``) and manual
products (人工处理, ``type = 2``) with their kind, from fixtures/dujiaoka.sql."""

import pytest

from inventory.models import CardKey, CardKeyStatus
from shop.models import Order, OrderStatus, Product, ProductKind
from shop.services.manual import manual_answers_read
from tests.shop.importers.test_dujiaoka import import_from, row, run_audit

pytestmark = pytest.mark.django_db

NETFLIX = "netflix: share@example.com / pa'ss"


def test_a_product_with_loop_keys_comes_as_reusable_with_its_loop_key_in_stock(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: the product is reusable, its loop key its one stock key
    netflix = Product.objects.get(name="Shared Netflix account")
    assert (netflix.kind, netflix.sales_cap) == (ProductKind.REUSABLE, None)
    stock = CardKey.objects.get(product=netflix, source__isnull=True, status=CardKeyStatus.AVAILABLE)
    assert stock.secret == NETFLIX
    # and its one-buyer key is left out and reported, not mixed in
    assert "keys: 1 not reusable (not 循环) while its product has reusable keys: left out, see details" in output
    assert ("product 3 has reusable (循环) and 1 unsold one-buyer keys: it came as reusable with its reusable "
            "keys only") in output
    assert not CardKey.objects.filter(product=netflix, import_line=13).exists()


def test_a_reusable_products_past_orders_hold_copies_of_its_stock_key(django_capture_on_commit_callbacks):
    # when
    import_from(capture=django_capture_on_commit_callbacks)
    # then: both buyers' orders are delivered history, each line a copy of the one stock key
    netflix = Product.objects.get(name="Shared Netflix account")
    stock = CardKey.objects.get(product=netflix, source__isnull=True, import_line=12)
    for number in ("DJORDER0000000007", "DJORDER0000000008"):
        order = Order.objects.get(order_no=number)
        copy = order.lines.get().card_keys.get()
        assert (order.status, copy.status, copy.source_id, copy.secret) == (
            OrderStatus.DELIVERED, CardKeyStatus.DELIVERED, stock.pk, NETFLIX)
        assert copy.delivered_at == order.paid_at
    # and the stock key is still for sale
    assert stock.status == CardKeyStatus.AVAILABLE
    # an order of a key no longer for sale there: a copy of it, kept here as a stock key that is void
    old = Order.objects.get(order_no="DJORDER0000000013").lines.get().card_keys.get()
    assert (old.secret, old.status, old.source.status) == (
        "netflix: old@example.com / retired", CardKeyStatus.DELIVERED, CardKeyStatus.VOID)
    assert list(CardKey.objects.filter(product=netflix, status=CardKeyStatus.AVAILABLE)) == [stock]
    assert "all invariants hold" in run_audit()


def test_a_manual_product_comes_with_its_questions_and_its_past_order(django_capture_on_commit_callbacks):
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then: manual, its questions as text fields, required as in the source
    qq = Product.objects.get(name="代充 QQ会员")
    assert qq.kind == ProductKind.MANUAL
    assert list(qq.manual_fields.order_by("position").values_list("key", "label", "type", "required",
                                                                  "help_text_zh")) == [
        ("qq_account", "QQ号", "text", True, ""), ("remark", "备注", "text", False, "选填，例如开通时长")]
    # and the line it could not read is reported
    assert "product 4 (代充 QQ会员): the question 'QQ号' could not be read" in output
    # and its delivered order comes as history: the buyer's answer sealed on it, a note as its content
    order = Order.objects.get(order_no="DJORDER0000000009")
    assert order.status == OrderStatus.DELIVERED
    assert manual_answers_read(order=order) == [{"key": "qq_account", "label": "QQ号", "value": "123456789"}]
    content = order.lines.get().card_keys.get()
    assert content.status == CardKeyStatus.DELIVERED and "Delivered by hand in dujiaoka" in content.secret
    assert not CardKey.objects.filter(product=qq, status=CardKeyStatus.AVAILABLE).exists()
    assert "all invariants hold" in run_audit()


def test_running_it_again_brings_no_second_copy_or_answer(django_capture_on_commit_callbacks):
    # given
    import_from(capture=django_capture_on_commit_callbacks)
    keys = CardKey.objects.count()
    # when
    output = import_from(capture=django_capture_on_commit_callbacks)
    # then
    assert CardKey.objects.count() == keys
    assert row(output, "orders")[:2] == [0, 8]
