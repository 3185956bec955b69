"""The key email's templates are rendered once per language and number of
keys, then filled in per message; what each message says is exactly what
rendering it would say."""

from decimal import Decimal

import django_rq
import pytest
from django.conf import settings
from django.template import engines
from django.template.loader import get_template, render_to_string
from django.test.signals import template_rendered

from delivery.channels import email_templates
from delivery.channels.email import TEMPLATES
from delivery.channels.email_templates import templates_render
from delivery.services import deliveries_enqueue
from inventory.selectors import keys_for_order
from inventory.services import keys_import
from shop.models import Order, Product
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def renders():
    """How often each template file was rendered (Django's test hook on every render)."""
    counts: dict[str, int] = {}
    # Skeletons built by earlier tests in this process would be reused: start
    # from none, as a fresh worker does.
    email_templates._skeletons.clear()

    def count(sender, template, context, **kwargs):
        if template.name:  # not the one-tag template of an order's link
            counts[template.name] = counts.get(template.name, 0) + 1

    template_rendered.connect(count)
    yield counts
    template_rendered.disconnect(count)


def _paid(pay, make_unpaid_order, product, *, n: int, language: str = "", quantity: int = 1) -> list[Order]:
    orders = []
    for _ in range(n):
        order = make_unpaid_order(product=product, quantity=quantity, email=f"b{Order.objects.count()}@example.com")
        Order.objects.filter(pk=order.pk).update(language=language)
        orders.append(pay(order))
    django_rq.get_queue("delivery").empty()
    return orders


def test_a_batch_renders_each_template_once_per_language_then_fills_it_in(
    pay, make_unpaid_order, make_product, run_worker, smtp_server, renders
):
    # given: 4 English and 2 Chinese orders of one key each
    product = make_product(keys=12, slug="gift", name="Gift", name_zh="礼品卡")
    english = _paid(pay, make_unpaid_order, product, n=4, language="en")
    chinese = _paid(pay, make_unpaid_order, product, n=2, language="zh-hans")
    renders.clear()
    # when: their emails go out in one batch
    deliveries_enqueue(delivery_ids=[email_of(o).pk for o in english + chinese])
    run_worker()
    # then: each template rendered twice per language (the skeleton, and the
    # first message rendered in full to check the skeleton against), not per message
    assert len(smtp_server.messages) == 6
    assert {name: renders.get(name, 0) for name in TEMPLATES.values()} == {name: 4 for name in TEMPLATES.values()}
    # when: the next batch, in the same languages
    later = _paid(pay, make_unpaid_order, product, n=3, language="en") + _paid(
        pay, make_unpaid_order, product, n=2, language="zh-hans")
    renders.clear()
    deliveries_enqueue(delivery_ids=[email_of(o).pk for o in later])
    run_worker()
    # then: no template rendered at all, and every email has its own order and key
    assert {name: renders.get(name, 0) for name in TEMPLATES.values()} == {name: 0 for name in TEMPLATES.values()}
    assert len(smtp_server.messages) == 11
    for order in later:
        [message] = [m for m in smtp_server.messages if m.rcpt_tos == [order.email]]
        [key] = keys_for_order(order_id=order.pk)
        assert order.order_no.encode() in message.content and key.secret.encode() in message.content


def test_the_filled_skeleton_is_what_rendering_gives(pay, make_unpaid_order, settings, renders):
    # given: names and keys that need escaping, in both languages, with one and three keys
    settings.SITE_URL = "https://shop.example.com"
    product = Product.objects.create(slug="esc", name='Tom & Jerry <"deluxe">', name_zh="猫和老鼠 & 朋友",
                                     price=Decimal("10.00"))
    secrets = ["A&B<C>", "'quoted\"", "普通-KEY", "plain-1", "x&amp;y", "{{ not a tag }}", "%EE%80%80",
               "\ue000oRderNo&\ue001"]
    keys_import(product=product, source="test", entries=enumerate(secrets, start=1))
    orders = [
        *_paid(pay, make_unpaid_order, product, n=1, language="en"),
        *_paid(pay, make_unpaid_order, product, n=1, language="zh-hans"),
        *_paid(pay, make_unpaid_order, product, n=1, language=""),
        *_paid(pay, make_unpaid_order, product, n=1, language="en", quantity=3),
        *_paid(pay, make_unpaid_order, product, n=1, language="zh-hans", quantity=2),
    ]
    templates = {name: get_template(path) for name, path in TEMPLATES.items()}
    expected = {}
    for order in orders:
        keys = list(keys_for_order(order_id=order.pk))
        context = {"order": order, "keys": keys, "shop_name": "Kamidrop & Co"}
        expected[order.pk] = {name: render_to_string(path, context) for name, path in TEMPLATES.items()}
        templates_render(templates, order=order, keys=keys, shop_name="Kamidrop & Co")  # builds the skeletons
    renders.clear()
    for order in orders:
        # when: from the skeletons
        filled = templates_render(templates, order=order, keys=list(keys_for_order(order_id=order.pk)),
                                  shop_name="Kamidrop & Co")
        # then
        assert filled == expected[order.pk]
    assert renders == {}


@pytest.mark.parametrize("source, expected", [
    # reads what the stand-ins do not offer
    ("{{ order.amount }} {{ order.email }}", ["10.00 b0@example.com", "12.34 b1@example.com"]),
    # changes a value with a filter
    ("{% for key in keys %}{{ key.secret|lower }}{% endfor %}", ["upper-one", "upper-2"]),
    # computes from a value: the skeleton looks whole, the first message's check refuses it
    ("{% for key in keys %}{{ key.secret|length }}{% endfor %}", ["9", "7"]),
])
def test_a_template_the_skeleton_cannot_serve_is_rendered_per_message(
    pay, make_unpaid_order, make_product, source, expected
):
    # given: an owner's template
    template = engines["django"].from_string(source)
    product = make_product(keys=0, slug="own")
    keys_import(product=product, source="test", entries=[(1, "UPPER-ONE"), (2, "UPPER-2")])
    first, second = _paid(pay, make_unpaid_order, product, n=2, language="en")
    Order.objects.filter(pk=second.pk).update(amount=Decimal("12.34"))
    second.refresh_from_db()
    # when: rendered for each order, the second twice
    texts = [templates_render({"t": template}, order=o, keys=list(keys_for_order(order_id=o.pk)),
                              shop_name=settings.SHOP_NAME)["t"] for o in (first, second, second)]
    # then: each message as rendering it gives
    assert texts == [expected[0], expected[1], expected[1]]
