"""The admin's order timeline titles each row with the event's ``str()``: in
the shop's time zone, like the "at" column beside it (it printed UTC)."""

from datetime import UTC, datetime

from django.test import override_settings

from shop.models import OrderEvent


@override_settings(TIME_ZONE="Asia/Shanghai")
def test_an_event_title_is_in_the_shop_time_zone():
    event = OrderEvent(order_id=7, type="PAID", at=datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    assert str(event) == "7 PAID @ 2026-01-01 08:30:00"
