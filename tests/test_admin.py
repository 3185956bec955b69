"""Django admin: every model listed with its data, key secrets masked, reveal audited."""

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.models import CardKey, CardKeyStatus
from payments.providers.sandbox import sandbox_trade_no
from riskctl.models import IdentifierKind, ListEntry
from shop.models import Order

pytestmark = pytest.mark.django_db

CARDKEYS_URL = reverse("admin:inventory_cardkey_changelist")
ORDERS_URL = reverse("admin:shop_order_changelist")


def _plaintexts(product, count: int) -> list[str]:
    return [f"{product.slug.upper()}-KEY-{i:05d}" for i in range(count)]


def _reveal_post(keys) -> dict:
    return {"action": "reveal_keys", "_selected_action": [k.pk for k in keys]}


@pytest.mark.parametrize(
    "url_name, expected",
    [
        ("admin:shop_product_changelist", lambda o: ["Product 1", '<td class="field-available_keys">2</td>']),
        ("admin:shop_order_changelist", lambda o: [o.order_no, "buyer@example.com", "10.00"]),
        ("admin:shop_orderline_changelist", lambda o: [o.order_no, "Product 1"]),
        ("admin:shop_orderevent_changelist", lambda o: [o.order_no, "Payment received", "Keys set aside"]),
        ("admin:inventory_cardkey_changelist", lambda o: ["••••0000", "••••0001", o.order_no]),
        ("admin:payments_payment_changelist", lambda o: [o.order_no, sandbox_trade_no(o.order_no), "Succeeded"]),
        ("admin:payments_paymentevent_changelist", lambda o: [sandbox_trade_no(o.order_no), "Accepted: order paid"]),
        ("admin:delivery_delivery_changelist", lambda o: [o.order_no, "b***@example.com", "Order page", "Email"]),
        ("admin:riskctl_listentry_changelist", lambda o: ["bad@example.com", "chargeback"]),
    ],
)
def test_changelist_lists_the_rows(admin_client, make_product, make_unpaid_order, pay, url_name, expected):
    # given
    order = pay(make_unpaid_order(product=make_product(keys=3)))
    ListEntry.objects.create(kind=IdentifierKind.EMAIL, value="bad@example.com", reason="chargeback")
    # when
    response = admin_client.get(reverse(url_name))
    # then
    assert response.status_code == 200
    content = response.content.decode()
    for text in expected(order):
        assert text in content
    assert response.context["cl"].result_count >= 1


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:shop_product_changelist",
        "admin:shop_order_changelist",
        "admin:shop_orderline_changelist",
        "admin:shop_orderevent_changelist",
        "admin:inventory_cardkey_changelist",
        "admin:payments_payment_changelist",
        "admin:payments_paymentevent_changelist",
        "admin:delivery_delivery_changelist",
        "admin:riskctl_listentry_changelist",
    ],
)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, make_product, make_unpaid_order, pay, admin_user, url_name
):
    # given
    url = reverse(url_name)
    pay(make_unpaid_order(product=make_product(keys=2)))
    ListEntry.objects.create(kind=IdentifierKind.EMAIL, value="a@example.com", reason="x", created_by=admin_user)
    admin_client.get(url)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    for _ in range(3):
        pay(make_unpaid_order(product=make_product(keys=2), email="other@example.com"))
    ListEntry.objects.create(kind=IdentifierKind.EMAIL, value="b@example.com", reason="y", created_by=admin_user)
    # when
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    # then
    assert response.status_code == 200
    assert response.context["cl"].result_count > 1
    assert len(many) == len(few)


def test_product_changelist_counts_available_keys_per_product(
    admin_client, make_product, make_unpaid_order, pay
):
    # given
    sold = make_product(keys=3)
    pay(make_unpaid_order(product=sold, quantity=2))
    empty = make_product()
    stocked = make_product(keys=4)
    # when
    response = admin_client.get(reverse("admin:shop_product_changelist"))
    # then
    counts = {p.pk: p.available_keys for p in response.context["cl"].result_list}
    assert counts == {sold.pk: 1, empty.pk: 0, stocked.pk: 4}


def test_cardkey_changelist_shows_masked_secrets_never_plaintext(admin_client, make_product):
    # given
    product = make_product(keys=3)
    # when
    response = admin_client.get(CARDKEYS_URL)
    # then
    assert response.status_code == 200
    content = response.content.decode()
    for plaintext in _plaintexts(product, 3):
        assert plaintext not in content
    for masked in ["••••0000", "••••0001", "••••0002"]:
        assert masked in content


def test_cardkey_change_page_shows_masked_secret_never_plaintext_or_fingerprint(admin_client, make_product):
    # given
    product = make_product(keys=1)
    key = CardKey.objects.get(product=product)
    # when
    response = admin_client.get(reverse("admin:inventory_cardkey_change", args=[key.pk]))
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert "PRODUCT-1-KEY-00000" not in content
    assert key.fingerprint not in content
    assert "••••0000" in content
    assert 'name="_save"' not in content


def test_cardkey_cannot_be_added_in_admin(admin_client, make_product):
    # given
    make_product(keys=1)
    # when
    response = admin_client.get(reverse("admin:inventory_cardkey_add"))
    # then
    assert response.status_code == 403
    assert CardKey.objects.count() == 1


def test_reveal_action_shows_plaintext_and_logs_each_key(admin_client, admin_user, make_product):
    # given
    product = make_product(keys=3)
    keys = list(CardKey.objects.filter(product=product).order_by("id"))
    # when
    response = admin_client.post(CARDKEYS_URL, _reveal_post(keys))
    # then
    assert response.status_code == 200
    assert response.templates[0].name == "admin/inventory/cardkey/reveal.html"
    content = response.content.decode()
    for plaintext in _plaintexts(product, 3):
        assert f'<code class="revealed-secret">{plaintext}</code>' in content
    entries = LogEntry.objects.order_by("object_id")
    assert [(e.object_id, e.action_flag, e.change_message, e.user_id) for e in entries] == [
        (str(k.pk), CHANGE, "revealed", admin_user.pk) for k in keys
    ]


def test_reveal_action_refuses_more_than_fifty_keys(admin_client, make_product):
    # given
    product = make_product(keys=51)
    keys = list(CardKey.objects.filter(product=product))
    # when
    response = admin_client.post(CARDKEYS_URL, _reveal_post(keys), follow=True)
    # then
    content = response.content.decode()
    assert "Select at most 50 keys to reveal; nothing was revealed." in content
    for plaintext in _plaintexts(product, 51):
        assert plaintext not in content
    assert LogEntry.objects.count() == 0


def test_reveal_action_gives_staff_without_superuser_no_plaintext(client, make_product):
    # given
    product = make_product(keys=2)
    keys = list(CardKey.objects.filter(product=product))
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_cardkey"))
    client.force_login(staff)
    # when
    response = client.post(CARDKEYS_URL, _reveal_post(keys), follow=True)
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert "••••0000" in content  # the staff member does see the list
    for plaintext in _plaintexts(product, 2):
        assert plaintext not in content
    assert "reveal_keys" not in content
    assert LogEntry.objects.count() == 0


def test_void_action_voids_only_available_keys(admin_client, make_product, make_unpaid_order, pay):
    # given
    product = make_product(keys=3)
    order = pay(make_unpaid_order(product=product, quantity=1))
    keys = list(CardKey.objects.filter(product=product).order_by("id"))
    selection = {"action": "void_available_keys", "_selected_action": [k.pk for k in keys]}
    # when: the action first asks for a reason, then voids
    asking = admin_client.post(CARDKEYS_URL, selection)
    assert asking.templates[0].name == "admin/inventory/cardkey/reason.html"
    assert CardKey.objects.filter(status=CardKeyStatus.VOID).count() == 0
    response = admin_client.post(CARDKEYS_URL, {**selection, "apply": "1", "reason": "leaked"}, follow=True)
    # then
    assert "2 of 3 selected keys voided." in response.content.decode()
    assert set(CardKey.objects.filter(status=CardKeyStatus.VOID).values_list("void_reason", flat=True)) == {"leaked"}
    statuses = list(CardKey.objects.filter(product=product).order_by("id").values_list("status", "order_line__order"))
    assert statuses == [
        (CardKeyStatus.DELIVERED, order.pk),
        (CardKeyStatus.VOID, None),
        (CardKeyStatus.VOID, None),
    ]
    assert sorted(LogEntry.objects.filter(change_message="voided").values_list("object_id", flat=True)) == sorted(
        [str(keys[1].pk), str(keys[2].pk)]
    )


@pytest.mark.parametrize("field", ["email", "order_no"])
def test_order_changelist_search_finds_the_order(admin_client, make_product, make_unpaid_order, field):
    # given
    product = make_product(keys=2)
    make_unpaid_order(product=product, email="first@example.com")
    wanted = make_unpaid_order(product=product, email="second@example.com")
    # when
    response = admin_client.get(ORDERS_URL, {"q": getattr(wanted, field)})
    # then
    assert [o.pk for o in response.context["cl"].result_list] == [wanted.pk]


def test_order_cannot_be_added_in_admin(admin_client):
    # when
    response = admin_client.get(reverse("admin:shop_order_add"))
    # then
    assert response.status_code == 403
    assert Order.objects.count() == 0


def test_order_change_page_is_read_only_with_lines_events_deliveries_and_payments(
    admin_client, make_product, make_unpaid_order, pay
):
    # given
    order = pay(make_unpaid_order(product=make_product(keys=1)))
    url = reverse("admin:shop_order_change", args=[order.pk])
    # when
    response = admin_client.get(url)
    refused = admin_client.post(url, {"email": "thief@example.com"})
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="_save"' not in content
    for text in ["Product 1", "Payment received", "Order page", sandbox_trade_no(order.order_no)]:
        assert text in content
    assert refused.status_code == 403
    order.refresh_from_db()
    assert order.email == "buyer@example.com"


def test_orderevent_cannot_be_added_changed_or_deleted(admin_client, make_product, make_unpaid_order):
    # given
    order = make_unpaid_order(product=make_product())
    event = order.events.get()
    # when
    add = admin_client.get(reverse("admin:shop_orderevent_add"))
    change = admin_client.post(reverse("admin:shop_orderevent_change", args=[event.pk]), {"actor": "x"})
    delete = admin_client.post(reverse("admin:shop_orderevent_delete", args=[event.pk]), {"post": "yes"})
    # then
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    event.refresh_from_db()
    assert event.actor == "test"


def test_listentry_add_normalises_value_and_records_creator(admin_client, admin_user):
    # when
    response = admin_client.post(
        reverse("admin:riskctl_listentry_add"),
        {"list_type": "BLOCK", "kind": IdentifierKind.EMAIL, "value": " Bad.Guy+x@Gmail.COM ", "reason": "chargeback",
         "expires_at_0": "", "expires_at_1": ""},
    )
    # then
    assert response.status_code == 302
    entry = ListEntry.objects.get()
    assert (entry.kind, entry.value, entry.created_by_id) == (IdentifierKind.EMAIL, "badguy@gmail.com", admin_user.pk)


def test_listentry_add_refuses_invalid_ip(admin_client):
    # when
    response = admin_client.post(
        reverse("admin:riskctl_listentry_add"),
        {"list_type": "BLOCK", "kind": IdentifierKind.IP, "value": "300.1.2.3", "reason": "abuse", "expires_at_0": "",
         "expires_at_1": ""},
    )
    # then
    assert response.status_code == 200
    assert "Enter an IP address or a CIDR range such as 203.0.113.0/24." in response.content.decode()
    assert ListEntry.objects.count() == 0


@pytest.mark.parametrize(
    "model",
    [
        "shop.product", "shop.order", "shop.orderline", "shop.orderevent", "inventory.cardkey",
        "payments.payment", "payments.paymentevent", "delivery.delivery", "riskctl.listentry",
    ],
)
def test_change_page_renders_without_key_plaintext(admin_client, make_product, make_unpaid_order, pay, model):
    # given
    product = make_product(keys=1)
    pay(make_unpaid_order(product=product))
    ListEntry.objects.create(kind=IdentifierKind.IP, value="203.0.113.9", reason="abuse")
    model_class = apps.get_model(model)
    obj = model_class.objects.order_by("id").first()
    # when
    response = admin_client.get(reverse(f"admin:{model.replace('.', '_')}_change", args=[obj.pk]))
    # then
    assert response.status_code == 200
    assert "PRODUCT-1-KEY-00000" not in response.content.decode()


def test_product_add_page_prepopulates_slug(admin_client):
    # when
    response = admin_client.get(reverse("admin:shop_product_add"))
    # then
    assert response.status_code == 200
    assert response.context["adminform"].prepopulated_fields[0]["field"].name == "slug"
