"""Shop admin: what staff type is stored the way the database requires."""

from decimal import Decimal

import pytest
from django.urls import reverse

from shop.models import Coupon, CouponKind

pytestmark = pytest.mark.django_db

COUPON_ADD_URL = reverse("admin:shop_coupon_add")


def _coupon_post(code: str) -> dict:
    return {"code": code, "kind": CouponKind.PERCENT, "value": "10", "used_count": "0", "active": "on",
            "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}


def test_a_lowercase_coupon_code_is_stored_upper_case(admin_client):
    # when
    response = admin_client.post(COUPON_ADD_URL, _coupon_post("  summer10 "))
    # then
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(Coupon.objects.values_list("code", "kind", "value")) == [
        ("SUMMER10", CouponKind.PERCENT, Decimal("10.00"))
    ]


def test_a_code_that_differs_only_in_case_from_an_existing_one_is_refused(admin_client):
    # given
    Coupon.objects.create(code="SUMMER10", kind=CouponKind.PERCENT, value=Decimal("5"))
    # when
    response = admin_client.post(COUPON_ADD_URL, _coupon_post("summer10"))
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"code": ["Coupon with this Code already exists."]}
    assert list(Coupon.objects.values_list("code", "value")) == [("SUMMER10", Decimal("5.00"))]
