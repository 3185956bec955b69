"""The order page's staff actions (resend, refund, replace a key, 补单, block
buyer) and finding an order by number, email, phone or one of its keys."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from delivery.models import Channel, Delivery, DeliveryStatus
from inventory import sealing
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent, KeyPolicy
from inventory.services import keys_import
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.providers.base import RefundFailed
from payments.providers.sandbox import SandboxProvider
from payments.services import RefundError
from shop.admin.orders import orders_with_key
from shop.models import KeyReport, KeyReportStatus, Order, OrderEventType, OrderStatus

pytestmark = pytest.mark.django_db

ORDERS_URL = reverse("admin:shop_order_changelist")


class RefundRefusingSandbox(SandboxProvider):
    """The sandbox, with its refund endpoint down."""

    def refund(self, *, payment, amount):
        raise RefundFailed("GATEWAY_DOWN", "connection refused")


def _url(name: str, order: Order) -> str:
    return reverse(f"admin:shop_order_{name}", args=[order.pk])


def _delivered(order: Order, *, phone: str = "") -> Order:
    """A paid order whose keys were handed over and every channel sent."""
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.DELIVERED, delivered_at=timezone.now(), phone=phone)
    order.refresh_from_db()
    return order


def _paid_awaiting_stock(order: Order) -> Order:
    """Paid (the sandbox payment succeeded), no key handed over."""
    Payment.objects.filter(order=order).update(status=PaymentStatus.SUCCEEDED, external_id=f"TRADE{order.pk}",
                                               succeeded_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.AWAITING_STOCK, paid_at=timezone.now())
    order.refresh_from_db()
    return order


def _staff(client, *codenames: str) -> User:
    """Staff who may view orders, plus ``codenames`` (app_label.codename)."""
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_order"))
    for name in codenames:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return user


def _state(order: Order) -> dict:
    order.refresh_from_db()
    return {
        "status": order.status,
        "keys": sorted(CardKey.objects.filter(order_line__order=order).values_list("id", "status")),
        "events": list(order.events.order_by("id").values_list("type", flat=True)),
        "deliveries": sorted(Delivery.objects.filter(order=order).values_list("id", "status", "resends")),
        "refunds": Refund.objects.count(),
        "log": LogEntry.objects.count(),
        "audit": KeyAuditEvent.objects.count(),
    }


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _action_ids(response) -> list[str]:
    return re.findall(r'id="order-action-([a-z-]+)"', response.content.decode())


def _block_link(order: Order) -> str | None:
    try:
        url = reverse("admin:riskctl_block_buyer", args=[order.pk])
    except NoReverseMatch:  # the block page is another slice's; finished once both land
        return None
    return f"{url}?next=%2Fadmin%2Fshop%2Forder%2F{order.pk}%2Fchange%2F"


# --- the Actions panel ------------------------------------------------------------


def test_a_delivered_order_offers_resend_and_replace_a_key(admin_client, make_product, make_unpaid_order, pay):
    # given
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=2))))
    # when
    response = admin_client.get(_url("change", order))
    # then
    assert response.status_code == 200
    expected = ["resend", "replace-key"] + (["block-buyer"] if _block_link(order) else []) + ["revoke-links"]
    assert _action_ids(response) == expected
    content = response.content.decode()
    assert f'href="{_url("resend", order)}"' in content
    assert f'href="{_url("replace_key", order)}"' in content
    assert 'name="_save"' not in content


def test_an_unpaid_order_offers_only_buzhan(admin_client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=2))
    # when
    response = admin_client.get(_url("change", order))
    # then
    assert _action_ids(response) == (["complete-payment"] + (["block-buyer"] if _block_link(order) else [])
                                     + ["revoke-links"])
    assert f'href="{_url("complete_payment", order)}"' in response.content.decode()


def test_a_paid_order_waiting_for_stock_offers_refund(admin_client, make_product, make_unpaid_order):
    # given
    order = _paid_awaiting_stock(make_unpaid_order(product=make_product()))
    # when
    response = admin_client.get(_url("change", order))
    # then
    assert _action_ids(response) == ["refund"] + (["block-buyer"] if _block_link(order) else []) + ["revoke-links"]


def test_a_refunded_order_offers_refund_again_only_when_the_provider_refund_failed(
    admin_client, make_product, make_unpaid_order, settings
):
    # given: one refund failed at the provider, one succeeded
    product = make_product()
    settings.PAYMENT_PROVIDERS = {**settings.PAYMENT_PROVIDERS, "sandbox": f"{__name__}.RefundRefusingSandbox"}
    failed = _paid_awaiting_stock(make_unpaid_order(product=product))
    admin_client.post(_url("refund", failed), {"reason": "out of stock"})
    settings.PAYMENT_PROVIDERS = {**settings.PAYMENT_PROVIDERS, "sandbox": "payments.providers.sandbox.SandboxProvider"}
    done = _paid_awaiting_stock(make_unpaid_order(product=product))
    admin_client.post(_url("refund", done), {"reason": "out of stock"})
    # when
    failed_page = admin_client.get(_url("change", failed))
    done_page = admin_client.get(_url("change", done))
    # then
    assert [o.status for o in Order.objects.filter(pk__in=[failed.pk, done.pk]).order_by("id")] == [
        OrderStatus.REFUNDED, OrderStatus.REFUNDED]
    assert "refund" in _action_ids(failed_page)
    assert "refund" not in _action_ids(done_page)


def test_the_block_buyer_link_returns_to_the_order(admin_client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product())
    # when
    content = admin_client.get(_url("change", order)).content.decode()
    # then
    link = _block_link(order)
    if link is None:
        assert 'id="order-action-block-buyer"' not in content
    else:
        assert f'id="order-action-block-buyer" href="{link.replace("&", "&amp;")}"' in content


def test_staff_without_the_permissions_see_no_action(client, make_product, make_unpaid_order, pay):
    # given: staff who may only look at orders
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=2))))
    _staff(client)
    # when
    response = client.get(_url("change", order))
    # then
    assert response.status_code == 200
    assert _action_ids(response) == []
    assert 'id="order-actions-none"' in response.content.decode()


@pytest.mark.parametrize("name", ["resend", "refund", "replace_key"])
def test_an_action_is_refused_without_its_permission(client, make_product, make_unpaid_order, pay, name):
    # given: staff with the other actions' permissions, not this one's
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=3))))
    others = {"resend": "delivery.change_delivery", "refund": "payments.add_refund",
              "replace_key": "inventory.replace_cardkey"}
    _staff(client, *(perm for action, perm in others.items() if action != name))
    before = _state(order)
    # when
    page = client.get(_url(name, order))
    post = client.post(_url(name, order), {"channels": [Channel.EMAIL], "reason": "x", "note": "x",
                                           "key": CardKey.objects.filter(order_line__order=order).first().pk})
    # then
    assert (page.status_code, post.status_code) == (403, 403)
    assert _state(order) == before


# --- resend -------------------------------------------------------------------------


def test_resend_asks_then_sends_the_same_keys_again(
    admin_client, admin_user, make_product, make_unpaid_order, pay, django_capture_on_commit_callbacks, run_worker,
    mailoutbox,
):
    # given: a delivered order (email sent), the buyer says the mail never came
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=2))))
    key = CardKey.objects.get(order_line__order=order)
    mailoutbox.clear()
    # when: the button opens a confirmation page
    page = admin_client.get(_url("resend", order))
    # then
    assert page.status_code == 200
    content = page.content.decode()
    assert "csrfmiddlewaretoken" in content and 'method="post"' in content
    assert re.search(r'<input type="checkbox" name="channels" value="EMAIL"[^>]* checked>', content)
    # when: confirmed with a note
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_url("resend", order), {"channels": ["EMAIL"], "note": "buyer: not received"},
                                     follow=True)
    run_worker()
    # then
    assert _messages(response) == [f"{order.order_no}: the same keys are being sent again (EMAIL)."]
    email = Delivery.objects.get(order=order, channel=Channel.EMAIL)
    assert (email.status, email.resends) == (DeliveryStatus.SENT, 1)
    assert len(mailoutbox) == 1 and key.secret in mailoutbox[0].body
    event = order.events.get(type=OrderEventType.RESEND_REQUESTED)
    assert (event.actor, event.data) == ("staff:admin", {"channels": ["EMAIL"], "note": "buyer: not received"})
    entry = LogEntry.objects.get(object_id=str(order.pk))
    assert (entry.user_id, entry.change_message) == (admin_user.pk,
                                                     "Resent the same keys (EMAIL); note: buyer: not received")
    assert CardKey.objects.filter(order_line__order=order).count() == 1


def test_resend_is_refused_before_the_keys_are_delivered(admin_client, make_product, make_unpaid_order):
    # given
    order = _paid_awaiting_stock(make_unpaid_order(product=make_product()))
    before = _state(order)
    # when
    response = admin_client.post(_url("resend", order), {"channels": ["EMAIL"]}, follow=True)
    # then
    assert _messages(response) == [
        f"Resend does not apply to order {order.order_no} while it is Paid, waiting for stock."]
    assert _state(order) == before


# --- refund --------------------------------------------------------------------------


def test_refund_from_the_order_page(admin_client, admin_user, make_product, make_unpaid_order,
                                    django_capture_on_commit_callbacks):
    # given
    order = _paid_awaiting_stock(make_unpaid_order(product=make_product()))
    # when
    page = admin_client.get(_url("refund", order))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_url("refund", order), {"reason": "no stock for a week"}, follow=True)
    # then
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    assert _messages(response) == [f"{order.order_no}: refunded 10.00 CNY."]
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    requested = order.events.get(type=OrderEventType.REFUND_REQUESTED)
    assert (requested.actor, requested.data) == ("staff:admin", {"reason": "no stock for a week"})
    assert order.events.get(type=OrderEventType.REFUNDED).actor == "staff:admin"
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    entry = LogEntry.objects.get(object_id=str(order.pk))
    assert (entry.user_id, entry.change_message) == (
        admin_user.pk, "Refund SUCCEEDED (10.00 CNY); reason: no stock for a week")


def test_refund_needs_a_reason(admin_client, make_product, make_unpaid_order):
    # given
    order = _paid_awaiting_stock(make_unpaid_order(product=make_product()))
    before = _state(order)
    # when
    response = admin_client.post(_url("refund", order), {"reason": "  "})
    # then
    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert _state(order) == before


def test_refund_is_not_offered_nor_done_once_the_keys_are_delivered(admin_client, make_product, make_unpaid_order,
                                                                    pay):
    # given
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=2))))
    before = _state(order)
    # when
    response = admin_client.post(_url("refund", order), {"reason": "changed mind"}, follow=True)
    # then
    assert _messages(response) == [f"Refund does not apply to order {order.order_no} while it is Delivered."]
    assert _state(order) == before


def test_a_failed_provider_refund_is_said_in_words(admin_client, make_product, make_unpaid_order, settings):
    # given: the provider's refund endpoint is down
    settings.PAYMENT_PROVIDERS = {**settings.PAYMENT_PROVIDERS, "sandbox": f"{__name__}.RefundRefusingSandbox"}
    order = _paid_awaiting_stock(make_unpaid_order(product=make_product()))
    # when
    response = admin_client.post(_url("refund", order), {"reason": "out of stock"}, follow=True)
    # then
    assert _messages(response) == [(
        f"{order.order_no}: the provider's refund failed: the provider refused or could not be reached "
        "(GATEWAY_DOWN). The order is taken back and its keys are in stock; refund by hand at the provider, "
        "or try Refund again.")]
    assert order.events.filter(type=OrderEventType.PAYMENT_ODD).count() == 1


def test_a_refused_refund_names_the_reason(admin_client, make_product, make_unpaid_order, monkeypatch):
    # given: the payment vanished between the page and the click
    order = _paid_awaiting_stock(make_unpaid_order(product=make_product()))

    def refuse(**kwargs):
        raise RefundError("PAYMENT_NOT_FOUND")

    monkeypatch.setattr("shop.admin.order_actions.payment_refund", refuse)
    before = _state(order)
    # when
    response = admin_client.post(_url("refund", order), {"reason": "x"}, follow=True)
    # then
    assert _messages(response) == [
        f"{order.order_no} was not refunded: the order has no successful payment to refund (PAYMENT_NOT_FOUND)."]
    assert _state(order) == before


# --- replace a key ------------------------------------------------------------------


def test_replace_a_key_voids_it_and_hands_over_a_fresh_one(
    admin_client, admin_user, make_product, make_unpaid_order, pay, django_capture_on_commit_callbacks
):
    # given: a delivered order of two keys, stock left
    product = make_product(keys=4)
    order = _delivered(pay(make_unpaid_order(product=product, quantity=2)))
    old, kept = CardKey.objects.filter(order_line__order=order).order_by("id")
    KeyReport.objects.create(order=order, card_key=old, reason="does not work", status=KeyReportStatus.OPEN)
    # when: the page lists the delivered keys, masked
    page = admin_client.get(_url("replace_key", order))
    # then
    content = page.content.decode()
    assert f"#{old.pk} · {product.name} · ••••{old.secret[-4:]}" in content
    assert old.secret not in content and kept.secret not in content
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(_url("replace_key", order),
                                     {"key": old.pk, "reason": "buyer: code rejected", "resend": "on"}, follow=True)
    # then
    new = CardKey.objects.filter(order_line__order=order).exclude(pk__in=[old.pk, kept.pk]).get()
    assert _messages(response) == [
        f"{order.order_no}: key #{old.pk} voided, key #{new.pk} handed over; the keys are being sent again."]
    assert sorted(CardKey.objects.filter(order_line__order=order).values_list("pk", "status")) == sorted(
        [(old.pk, CardKeyStatus.VOID), (kept.pk, CardKeyStatus.DELIVERED), (new.pk, CardKeyStatus.DELIVERED)])
    replaced = order.events.get(type=OrderEventType.KEY_REPLACED)
    assert (replaced.actor, replaced.data) == (
        "staff:admin", {"old_key": old.pk, "new_key": new.pk, "reason": "buyer: code rejected"})
    assert order.events.get(type=OrderEventType.RESEND_REQUESTED).actor == "staff:admin"
    assert Delivery.objects.get(order=order, channel=Channel.EMAIL).resends == 1
    audit = KeyAuditEvent.objects.get(card_key=old, action=KeyAuditEvent.Action.REPLACED)
    assert (audit.actor, audit.detail) == ("staff:admin", "buyer: code rejected")
    report = KeyReport.objects.get()
    assert (report.status, report.replacement_key_id) == (KeyReportStatus.RESOLVED, new.pk)
    entry = LogEntry.objects.get(object_id=str(order.pk))
    assert (entry.user_id, entry.change_message) == (
        admin_user.pk, f"Replaced key #{old.pk} with #{new.pk}; reason: buyer: code rejected; keys sent again")


def test_replace_a_key_with_no_stock_left_changes_nothing(admin_client, make_product, make_unpaid_order, pay):
    # given: the order took the last key
    product = make_product(keys=1)
    order = _delivered(pay(make_unpaid_order(product=product)))
    old = CardKey.objects.get(order_line__order=order)
    before = _state(order)
    # when
    response = admin_client.post(_url("replace_key", order), {"key": old.pk, "reason": "broken", "resend": "on"},
                                 follow=True)
    # then
    assert _messages(response) == [
        f"No key of {product.name} is in stock: nothing was changed, key #{old.pk} is still the buyer's."]
    assert _state(order) == before


def test_replace_a_key_needs_a_reason_and_a_key_of_this_order(admin_client, make_product, make_unpaid_order, pay):
    # given
    product = make_product(keys=4)
    order = _delivered(pay(make_unpaid_order(product=product)))
    other = _delivered(pay(make_unpaid_order(product=product)))
    old = CardKey.objects.get(order_line__order=order)
    before = _state(order)
    # when
    no_reason = admin_client.post(_url("replace_key", order), {"key": old.pk, "reason": ""})
    not_ours = admin_client.post(_url("replace_key", order), {
        "key": CardKey.objects.get(order_line__order=other).pk, "reason": "x"})
    # then
    assert no_reason.context["form"].errors == {"reason": ["This field is required."]}
    assert list(not_ours.context["form"].errors) == ["key"]
    assert _state(order) == before


def test_replace_a_key_is_refused_before_the_keys_are_delivered(admin_client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product(keys=2))
    # when
    response = admin_client.post(_url("replace_key", order), {"key": 1, "reason": "x"}, follow=True)
    # then
    assert _messages(response) == [
        f"Replace a key does not apply to order {order.order_no} while it is Awaiting payment."]
    assert CardKey.objects.filter(status=CardKeyStatus.VOID).count() == 0
    assert LogEntry.objects.count() == 0


# --- finding an order ----------------------------------------------------------------


def _found(admin_client, term: str) -> list[int]:
    response = admin_client.get(ORDERS_URL, {"q": term})
    assert response.status_code == 200
    return [o.pk for o in response.context["cl"].result_list]


@pytest.fixture
def two_orders(make_product, make_unpaid_order, pay):
    product = make_product(keys=4)
    first = _delivered(pay(make_unpaid_order(product=product, email="first@example.com")), phone="13800138001")
    wanted = _delivered(pay(make_unpaid_order(product=product, email="Second.Buyer@example.com")),
                        phone="+8613900139002")
    return first, wanted


def test_the_search_box_says_what_it_finds(admin_client):
    # when
    content = admin_client.get(ORDERS_URL).content.decode()
    # then
    assert "Find an order by its number, the buyer&#x27;s email or phone, or one of its card keys" in content


def test_find_an_order_by_number_email_and_phone(admin_client, two_orders):
    # given
    _, wanted = two_orders
    # when / then
    assert _found(admin_client, wanted.order_no) == [wanted.pk]
    assert _found(admin_client, "second.buyer@EXAMPLE.com") == [wanted.pk]
    assert _found(admin_client, "+8613900139002") == [wanted.pk]
    assert _found(admin_client, "+86 139-0013-9002") == [wanted.pk]
    assert _found(admin_client, "nobody@example.com") == []


def test_find_an_order_by_one_of_its_keys_whatever_its_case_and_dashes(admin_client, two_orders):
    # given: keys like PRODUCT-1-KEY-00001
    first, wanted = two_orders
    secret = CardKey.objects.get(order_line__order=wanted).secret
    # when / then
    assert _found(admin_client, secret) == [wanted.pk]
    assert _found(admin_client, f"  {secret.lower()} ") == [wanted.pk]
    assert _found(admin_client, secret.replace("-", "")) == [wanted.pk]
    assert _found(admin_client, secret.replace("-", " ").lower()) == [wanted.pk]
    assert _found(admin_client, CardKey.objects.get(order_line__order=first).secret) == [first.pk]
    assert _found(admin_client, "PRODUCT-1-KEY-99999") == []


def test_find_an_order_by_a_replaced_key(admin_client, make_product, make_unpaid_order, pay):
    # given: the buyer quotes the key staff voided and replaced
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=3))))
    old = CardKey.objects.get(order_line__order=order)
    admin_client.post(_url("replace_key", order), {"key": old.pk, "reason": "broken"})
    # when / then
    assert CardKey.objects.get(pk=old.pk).status == CardKeyStatus.VOID
    assert _found(admin_client, old.secret) == [order.pk]


def test_a_key_is_found_the_way_its_product_compares_keys(admin_client, make_product, make_unpaid_order, pay):
    # given: a product whose policy counts O as 0 (the loose fingerprint does not)
    product = make_product()
    KeyPolicy.objects.create(product=product, fold_confusables=True)
    keys_import(product=product, source="test", entries=[(1, "GAME-0000-1111"), (2, "GAME-0000-2222")])
    order = _delivered(pay(make_unpaid_order(product=product)))
    secret = CardKey.objects.get(order_line__order=order).secret
    # when / then
    assert _found(admin_client, secret.replace("0", "O").replace("1", "I")) == [order.pk]


def test_a_key_search_decrypts_nothing(admin_client, two_orders, monkeypatch):
    # given
    _, wanted = two_orders
    secret = CardKey.objects.get(order_line__order=wanted).secret

    def refuse(*args, **kwargs):
        raise AssertionError("a key was decrypted during the search")

    monkeypatch.setattr(sealing, "secret_open", refuse)
    monkeypatch.setattr(sealing, "blob_open", refuse)
    # when / then
    assert _found(admin_client, secret.lower()) == [wanted.pk]


def test_a_key_search_fingerprints_once_per_distinct_policy_and_uses_the_indexes(make_product):
    # given: three products on the default policy, one with its own, a stock
    # large enough for the planner to choose as it would in a shop
    for _ in range(3):
        make_product(keys=1000)
    KeyPolicy.objects.create(product=make_product(keys=1000), casefold=True)
    # when
    subquery = orders_with_key(text="PRODUCT-1-KEY-00000")
    sql, params = subquery.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inventory_cardkey")  # statistics of this table, not of an earlier test's
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then: two exact fingerprints (default, casefold) and one loose, each through an index
    assert sql.count('"inventory_cardkey"."fingerprint" =') == 2
    assert sql.count('"inventory_cardkey"."loose_fingerprint" =') == 1
    assert "Seq Scan on inventory_cardkey" not in plan, plan
    assert "cardkey_loose_fp_idx" in plan and "cardkey_product_fp_idx" in plan, plan


def test_a_key_search_keeps_the_list_filters(admin_client, two_orders):
    # given
    _, wanted = two_orders
    secret = CardKey.objects.get(order_line__order=wanted).secret
    # when
    delivered = admin_client.get(ORDERS_URL, {"q": secret, "status__exact": OrderStatus.DELIVERED})
    refunded = admin_client.get(ORDERS_URL, {"q": secret, "status__exact": OrderStatus.REFUNDED})
    # then
    assert [o.pk for o in delivered.context["cl"].result_list] == [wanted.pk]
    assert list(refunded.context["cl"].result_list) == []


def test_an_action_post_needs_the_csrf_token(admin_user, make_product, make_unpaid_order, pay):
    # given: a browser session without the form's token
    order = _delivered(pay(make_unpaid_order(product=make_product(keys=2))))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    before = _state(order)
    # when
    response = browser.post(_url("resend", order), {"channels": ["EMAIL"]})
    # then
    assert response.status_code == 403
    assert _state(order) == before
