"""Manual products (代充): the buyer answers the owner's fields at checkout
(checked, sealed), a paid order waits in the staff's queue with a due time
and an owner alert, staff deliver by hand from the admin, and the content
reaches the buyer as a key would (order page, email, resend); the audit
knows the kind."""

import base64
import email
import email.header
import os
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from delivery.models import AlertKind, Delivery, OwnerAlert
from inventory.models import CardKey, CardKeyStatus
from payments.services import checkout_start_payment
from shop.access import SESSION_ORDERS, order_token_new
from shop.models import ManualAnswers, ManualField, Order, OrderEventType, OrderStatus, ProductKind
from shop.ops.audit import audit_run
from shop.ops.sweep import sweep_run
from shop.services import CheckoutError
from shop.services.manual import manual_answers_read
from tests.shop.test_catalogue_media import _product_post

pytestmark = pytest.mark.django_db

QUEUE_URL = reverse("admin:shop_manualqueueorder_changelist")
ANSWERS = {"account": "player-8812", "password": "hunter2-secret", "server": "Asia", "amount": "60"}


@pytest.fixture
def manual_product(make_product):
    product = make_product(slug="diamonds", name="Game diamonds", kind=ProductKind.MANUAL, fulfil_within_minutes=30)
    ManualField.objects.bulk_create([
        ManualField(product=product, position=1, key="account", label="Game account", label_zh="游戏账号",
                    max_length=20),
        ManualField(product=product, position=2, key="password", label="Password", label_zh="密码"),
        ManualField(product=product, position=3, key="server", label="Server", label_zh="区服", type="select",
                    choices="Asia\nEurope\n"),
        ManualField(product=product, position=4, key="amount", label="Diamonds", type="number", required=False,
                    min_value=Decimal(10), max_value=Decimal(1000)),
    ])
    return product


def _violations() -> dict[int, list[str]]:
    return {result.number: result.offending for result in audit_run() if not result.ok}


def _place(product, email="buyer@example.com", **answers):
    """A checkout with the sandbox's payment opened, as the product page does."""
    return checkout_start_payment(product_slug=product.slug, quantity=1, email=email, provider_id="sandbox",
                                  fields={**ANSWERS, **answers}).order


def _deliver(admin_client, order, content="Recharged 60 diamonds, ref R-5521"):
    return admin_client.post(reverse("admin:shop_manualqueueorder_change", args=[order.pk]), {"content": content})


def test_checkout_seals_the_answers_and_holds_no_stock(manual_product):
    # when
    order = _place(manual_product)
    # then
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert manual_answers_read(order=order) == [
        {"key": "account", "label": "Game account", "value": "player-8812"},
        {"key": "password", "label": "Password", "value": "hunter2-secret"},
        {"key": "server", "label": "Server", "value": "Asia"},
        {"key": "amount", "label": "Diamonds", "value": "60"},
    ]
    sealed = bytes(ManualAnswers.objects.get().answers_sealed)
    assert b"hunter2" not in sealed and b"player-8812" not in sealed
    assert not CardKey.objects.exists()


@pytest.mark.parametrize(("answers", "code", "field"), [
    ({"account": ""}, "FIELD_REQUIRED", "fields.account"),
    ({"password": None}, "FIELD_REQUIRED", "fields.password"),
    ({"account": "x" * 21}, "FIELD_INVALID", "fields.account"),
    ({"server": "Mars"}, "FIELD_INVALID", "fields.server"),
    ({"amount": "lots"}, "FIELD_INVALID", "fields.amount"),
    ({"amount": "NaN"}, "FIELD_INVALID", "fields.amount"),
    ({"amount": "5"}, "FIELD_INVALID", "fields.amount"),
    ({"amount": 1001}, "FIELD_INVALID", "fields.amount"),
    ({"nickname": "x"}, "FIELD_INVALID", "fields.nickname"),
])
def test_checkout_refuses_a_missing_or_wrong_answer_naming_the_field(manual_product, answers, code, field):
    # when
    with pytest.raises(CheckoutError) as refused:
        _place(manual_product, **answers)
    # then: nothing was written
    assert (refused.value.code, refused.value.field) == (code, field)
    assert not Order.objects.exists() and not ManualAnswers.objects.exists()


def test_an_optional_answer_may_be_left_out(manual_product):
    # when
    order = _place(manual_product, amount="")
    # then
    assert manual_answers_read(order=order)[3] == {"key": "amount", "label": "Diamonds", "value": ""}


def test_a_paid_order_waits_in_the_queue_with_an_alert_and_no_delivery(manual_product, pay):
    # given
    order = _place(manual_product)
    # when
    order = pay(order)
    # then
    assert order.status == OrderStatus.PREPARING
    assert timedelta(minutes=29) < order.fulfil_due_at - timezone.now() <= timedelta(minutes=30)
    types = list(order.events.order_by("at", "id").values_list("type", flat=True))
    assert types[-1] == OrderEventType.MANUAL_QUEUED and OrderEventType.AWAITING_STOCK not in types
    assert not Delivery.objects.filter(order=order).exists()
    alert = OwnerAlert.objects.get(kind=AlertKind.MANUAL_QUEUE)
    assert alert.dedupe_key == f"manual-queue:{order.order_no}"
    assert _violations() == {}


def test_staff_deliver_from_the_queue_and_the_buyer_gets_it_by_page_email_and_resend(
        client, admin_client, manual_product, pay, run_worker, smtp_server, django_capture_on_commit_callbacks):
    # given: a paid order in the queue, the buyer's page open
    order = pay(_place(manual_product))
    token, token_hash = order_token_new()
    Order.objects.filter(pk=order.pk).update(token_hash=token_hash)
    session = client.session
    session[SESSION_ORDERS] = [order.order_no]
    session.save()
    page = client.get(reverse("shop:order", args=[order.order_no]), HTTP_ACCEPT_LANGUAGE="en")
    assert "The shop is preparing your order by hand" in page.content.decode()
    # and: staff see it in the queue with the buyer's answers
    listed = admin_client.get(QUEUE_URL).content.decode()
    assert order.order_no in listed and "min left" in listed
    shown = admin_client.get(reverse("admin:shop_manualqueueorder_change", args=[order.pk])).content.decode()
    assert "player-8812" in shown and "hunter2-secret" in shown and "Asia" in shown
    # and: opening the answers is on the staff's trail, not on the buyer's timeline
    viewed = order.events.get(type=OrderEventType.ANSWERS_VIEWED)
    assert viewed.actor == "staff:admin" and viewed.data == {"ip": "127.0.0.1"}
    assert "opened by staff" not in client.get(reverse("shop:order", args=[order.order_no])).content.decode()
    # when: staff deliver
    with django_capture_on_commit_callbacks(execute=True):
        response = _deliver(admin_client, order)
    run_worker()
    # then: handed over like a key, by whom recorded, content sealed
    assert response.status_code == 302 and response["Location"] == QUEUE_URL
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    event = order.events.get(type=OrderEventType.MANUAL_DELIVERED)
    assert (event.actor, event.data) == ("staff:admin", {"late": False})
    key = CardKey.objects.get(order_line__order=order)
    assert (key.status, key.secret) == (CardKeyStatus.DELIVERED, "Recharged 60 diamonds, ref R-5521")
    assert b"R-5521" not in bytes(key.secret_sealed)
    assert order.pk not in [o.pk for o in admin_client.get(QUEUE_URL).context["cl"].result_list]
    # and: by email, whose subject says the order is done (it carries no key)
    assert len(smtp_server.messages) == 1 and b"R-5521" in smtp_server.messages[0].content
    subject = email.message_from_bytes(smtp_server.messages[0].content)["Subject"]
    assert str(email.header.make_header(email.header.decode_header(subject))).endswith(
        f"your order {order.order_no} is done")
    # and: on the order page, with the steps in the timeline
    page = client.get(reverse("shop:order", args=[order.order_no]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Your delivery from the shop" in page
    assert 'data-type="MANUAL_QUEUED"' in page and 'data-type="MANUAL_DELIVERED"' in page
    revealed = client.post(f"/orders/{order.order_no}/keys/{key.pk}/reveal", HTTP_ACCEPT="application/json")
    assert revealed.json() == {"id": key.pk, "key": "Recharged 60 diamonds, ref R-5521"}
    # when: the buyer asks for a resend
    with django_capture_on_commit_callbacks(execute=True):
        resent = client.post(reverse("shop:api-order-resend", args=[order.order_no]),
                             HTTP_AUTHORIZATION=f"Bearer {token}")
    run_worker()
    # then: the same content again
    assert resent.status_code == 202
    assert len(smtp_server.messages) == 2 and b"R-5521" in smtp_server.messages[1].content
    assert _violations() == {}


def test_staff_cannot_deliver_empty_content_or_twice(admin_client, manual_product, pay):
    # given
    order = pay(_place(manual_product))
    # when
    empty = _deliver(admin_client, order, content="   ")
    # then
    assert empty.status_code == 200 and not CardKey.objects.exists()
    order.refresh_from_db()
    assert order.status == OrderStatus.PREPARING
    # when: delivered, then posted again
    assert _deliver(admin_client, order).status_code == 302
    again = _deliver(admin_client, order, content="another")
    # then: no longer in the queue, one content only
    assert again.status_code == 404
    assert CardKey.objects.filter(order_line__order=order).count() == 1


def test_the_queue_puts_overdue_orders_first_and_the_sweep_alerts_once_per_order(admin_client, manual_product, pay):
    # given: two queued orders, the younger one overdue
    first = pay(_place(manual_product, email="a@example.com"))
    late = pay(_place(manual_product, email="b@example.com"))
    Order.objects.filter(pk=late.pk).update(fulfil_due_at=timezone.now() - timedelta(minutes=5))
    # when
    listed = admin_client.get(QUEUE_URL)
    # then
    assert [o.pk for o in listed.context["cl"].result_list] == [late.pk, first.pk]
    assert "overdue by 5 min" in listed.content.decode()
    # when: the sweep runs three times, the owner acknowledging the alert in between
    reports = [sweep_run()]
    OwnerAlert.objects.filter(kind=AlertKind.MANUAL_OVERDUE).update(acknowledged_at=timezone.now())
    reports += [sweep_run(), sweep_run()]
    # then: one alert, for the overdue order only
    assert [report.overdue for report in reports] == [1, 1, 1]
    alerts = OwnerAlert.objects.filter(kind=AlertKind.MANUAL_OVERDUE)
    assert list(alerts.values_list("dedupe_key", "occurrences")) == [(f"manual-overdue:{late.order_no}", 1)]
    # and the on-call engineer running the command sees it too
    out = StringIO()
    call_command("sweep", stdout=out)
    assert out.getvalue().strip().endswith("0 orders stuck, 1 manual orders overdue")


def test_a_held_order_is_reviewed_first_then_queued(manual_product, admin_user):
    # given: an order held for review when paid
    from shop.services import order_fulfil, order_mark_paid, order_review_approve

    order = _place(manual_product)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order_mark_paid(order=order, actor="test")
        assert order_fulfil(order=order, hold_reason="dispute seen first") == OrderStatus.IN_REVIEW
    assert _violations() == {}
    # when
    status = order_review_approve(order_id=order.pk, user=admin_user)
    # then
    assert status == OrderStatus.PREPARING
    assert OwnerAlert.objects.filter(kind=AlertKind.MANUAL_QUEUE).count() == 1
    assert _violations() == {}


def test_a_queued_order_can_be_refunded(manual_product, pay):
    # given
    from shop.services import order_refund_begin

    order = pay(_place(manual_product))
    # when
    with transaction.atomic():
        released = order_refund_begin(order=Order.objects.select_for_update().get(pk=order.pk), actor="staff:x",
                                      reason="cannot reach the game server")
    # then
    order.refresh_from_db()
    assert (order.status, released) == (OrderStatus.REFUNDED, 0)


def test_the_audit_flags_a_delivered_manual_order_without_content(manual_product, pay):
    # given: a queued order marked delivered behind the services' back
    order = pay(_place(manual_product))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.DELIVERED, delivered_at=timezone.now())
    # when
    violations = _violations()
    # then
    assert violations == {8: [f"order:{order.pk}"]}


def test_the_api_lists_the_kind_and_fields_and_takes_answers(client, manual_product):
    # when
    listed = client.get("/api/v1/products", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    # then
    [product] = listed
    assert (product["kind"], product["stock"]) == ("manual", None)
    assert [(f["key"], f["label"], f["type"], f["required"]) for f in product["fields"]] == [
        ("account", "游戏账号", "text", True), ("password", "密码", "text", True), ("server", "区服", "select", True),
        ("amount", "Diamonds", "number", False)]
    assert product["fields"][2]["choices"] == ["Asia", "Europe"]
    assert (product["fields"][3]["min"], product["fields"][3]["max"]) == ("10.00", "1000.00")
    # when: ordered through the API, without and then with the answers
    body = {"product": "diamonds", "quantity": 1, "email": "api@example.com"}
    missing = client.post("/api/v1/orders", {**body, "fields": {"account": "p1"}}, content_type="application/json")
    not_object = client.post("/api/v1/orders", {**body, "fields": ["p1"]}, content_type="application/json")
    created = client.post("/api/v1/orders", {**body, "fields": {**ANSWERS, "amount": 60}},
                          content_type="application/json")
    # then
    assert missing.status_code == 400
    assert (missing.json()["error"]["code"], missing.json()["error"]["fields"]) == ("FIELD_REQUIRED",
                                                                                    ["fields.password"])
    assert (not_object.status_code, not_object.json()["error"]["code"]) == (400, "FIELD_INVALID")
    assert created.status_code == 201
    assert manual_answers_read(order=Order.objects.get())[3]["value"] == "60"


def test_the_product_page_asks_the_fields_and_shows_a_wrong_answer_beside_its_field(client, manual_product):
    # when
    page = client.get(reverse("shop:product", args=["diamonds"]), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    # then
    assert 'name="field_account"' in page and "游戏账号" in page and '<option value="Europe">' in page
    assert "In stock" in page or "有货" in page
    # when: the buyer leaves the password out
    posted = {"quantity": "1", "email": "web@example.com", "terms": "on", "method": "sandbox",
              **{f"field_{k}": v for k, v in ANSWERS.items()}, "field_password": ""}
    response = client.post(reverse("shop:product", args=["diamonds"]), posted, HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert response.status_code == 400
    assert response.context["form"].errors == {"field_password": ["Fill in Password."]}
    assert not Order.objects.exists()
    # when: filled in
    response = client.post(reverse("shop:product", args=["diamonds"]), {**posted, "field_password": "pw-123456"})
    # then
    assert response.status_code == 302
    assert manual_answers_read(order=Order.objects.get())[1]["value"] == "pw-123456"


def test_the_owner_defines_the_fields_on_the_product_page_and_finds_the_queue_on_the_admin_home(admin_client):
    # when: a manual product with one question is added in the admin
    response = admin_client.post(reverse("admin:shop_product_add"), _product_post(
        kind="manual", fulfil_within_minutes="15", **{
            "manual_fields-TOTAL_FORMS": "1", "manual_fields-0-position": "1", "manual_fields-0-key": "uid",
            "manual_fields-0-label": "Player ID", "manual_fields-0-label_zh": "玩家 ID",
            "manual_fields-0-type": "number", "manual_fields-0-required": "on", "manual_fields-0-choices": "",
            "manual_fields-0-max_length": "", "manual_fields-0-min_value": "", "manual_fields-0-max_value": "",
            "manual_fields-0-help_text": "", "manual_fields-0-help_text_zh": ""}))
    # then
    assert response.status_code == 302, response.context["adminform"].form.errors
    field = ManualField.objects.get()
    assert (field.product.kind, field.product.fulfil_within_minutes, field.key, field.type) == (
        "manual", 15, "uid", "number")
    home = admin_client.get(reverse("admin:index")).content.decode()
    assert QUEUE_URL in home and "Manual fulfilment queue" in home


def test_key_rotation_reseals_the_answers(manual_product, settings):
    # given: an order's answers sealed under the old key
    order = _place(manual_product)
    old = settings.KEY_ENCRYPTION_KEYS[0]
    settings.KEY_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(os.urandom(32)).decode(), old]
    # when
    out = StringIO()
    call_command("rotate_keys", stdout=out)
    # then: they open without the old key
    assert "1 manual orders' answers re-sealed under the primary key" in out.getvalue()
    settings.KEY_ENCRYPTION_KEYS = settings.KEY_ENCRYPTION_KEYS[:1]
    assert manual_answers_read(order=order)[1]["value"] == "hunter2-secret"
    assert _violations() == {}


def test_an_answer_must_match_the_owners_check_told_in_the_owners_words(client, manual_product):
    # given: the account must be a QQ number
    ManualField.objects.filter(key="account").update(pattern=r"^[1-9][0-9]{4,11}$", pattern_message="Not a QQ number",
                                                     pattern_message_zh="请输入正确的QQ号")
    posted = {"quantity": "1", "email": "web@example.com", "terms": "on", "method": "sandbox",
              **{f"field_{k}": v for k, v in ANSWERS.items()}}
    # when: on the product page, in Chinese and in English
    response = client.post(reverse("shop:product", args=["diamonds"]), posted, HTTP_ACCEPT_LANGUAGE="zh-hans")
    english = client.post(reverse("shop:product", args=["diamonds"]), posted, HTTP_ACCEPT_LANGUAGE="en")
    # then: the owner's message in the buyer's language beside the field, nothing written
    assert response.status_code == 400
    assert response.context["form"].errors == {"field_account": ["请输入正确的QQ号"]}
    assert english.context["form"].errors == {"field_account": ["Not a QQ number"]}
    # when: through the API, which lists the check
    listed = client.get("/api/v1/products").json()[0]["fields"][0]
    refused = client.post("/api/v1/orders", {"product": "diamonds", "quantity": 1, "email": "api@example.com",
                                             "fields": ANSWERS}, content_type="application/json")
    # then
    assert listed["pattern"] == r"^[1-9][0-9]{4,11}$"
    assert (refused.status_code, refused.json()["error"]["code"], refused.json()["error"]["fields"]) == (
        400, "FIELD_INVALID", ["fields.account"])
    assert not Order.objects.exists()
    # and a matching answer goes through
    assert _place(manual_product, account="10001").status == OrderStatus.PENDING_PAYMENT


def test_the_owner_cannot_save_a_check_that_is_not_a_regular_expression(manual_product):
    field = ManualField.objects.get(key="account")
    field.pattern = "[0-9"
    with pytest.raises(ValidationError, match="Not a regular expression"):
        field.full_clean()
