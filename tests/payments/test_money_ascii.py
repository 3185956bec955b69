"""Provider amounts are ASCII: other Unicode digits (full-width, Arabic-Indic,
superscript) are refused even in a correctly signed notice (issue 18, point 10)."""

import logging
from decimal import Decimal

import pytest

from payments.models import Payment, PaymentEvent, PaymentStatus
from payments.providers.base import CallbackRejected, money_parse
from shop.models import OrderStatus
from tests.payments.conftest import EPAY_NOTIFY_URL, epay_notice


@pytest.mark.parametrize("raw", ["１５.００", "１５", "١٥", "١٥.٥٠", "۱۵", "१५", "¹⁵", "15.５", "𝟏𝟓", "15.00\n"])
def test_money_parse_refuses_digits_other_than_ascii(raw):
    # when
    with pytest.raises(CallbackRejected) as refused:
        money_parse(raw)
    # then
    assert refused.value.code == "AMOUNT_INVALID"


@pytest.mark.parametrize("raw, amount", [("15", Decimal("15.00")), ("15.5", Decimal("15.50")),
                                         ("15.50", Decimal("15.50"))])
def test_money_parse_accepts_ascii_amounts(raw, amount):
    # when
    parsed = money_parse(raw)
    # then
    assert (parsed, str(parsed)) == (amount, str(amount))


@pytest.mark.django_db
def test_a_signed_epay_notice_with_full_width_digits_is_refused(client, make_product, make_epay_order, caplog):
    # given: the price is 15.00 and the gateway signed "１５.００"
    order = make_epay_order(product=make_product(keys=2, price="15.00"))
    notice = epay_notice(order, money="１５.００")
    # when
    with caplog.at_level(logging.WARNING, logger="payments.views"):
        response = client.post(EPAY_NOTIFY_URL, notice)
    # then: refused before the database, nothing paid
    assert (response.status_code, response.content) == (400, b"fail")
    assert "epay callback refused: AMOUNT_INVALID" in caplog.text
    assert PaymentEvent.objects.count() == 0
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert Payment.objects.get(order=order).status == PaymentStatus.CREATED
