"""Shared fixtures: real PostgreSQL and Redis (embedded), a real SMTP server,
a burst RQ worker, and builders for products, orders and signed notifies."""

from __future__ import annotations

import importlib
import socket
from decimal import Decimal

import django_rq
import pytest
from django.conf import settings
from django.db import transaction
from rq import SimpleWorker

from inventory.services import keys_import
from payments.models import Payment
from payments.providers.sandbox import sandbox_sign, sandbox_trade_no
from shop.access import order_token_new
from shop.models import Order, OrderEvent, OrderEventType, OrderLine, Product
from shop.project.redis_breaker import breakers_reset
from tests import db_teardown

db_teardown.install()


def _db_kind(item) -> int:
    """pytest-django's order of a test: 0 in a rolled-back transaction, 1
    transactional (its tables emptied after it), 2 no database."""
    marker = item.get_closest_marker("django_db")
    transactional = bool(marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences")))
    transactional = transactional or bool({"transactional_db", "live_server"} & set(item.fixturenames))
    if transactional:
        return 1
    return 0 if marker or "db" in item.fixturenames else 2


@pytest.hookimpl(trylast=True)  # after pytest-django has put them in Django's order
def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` (several seconds each) go first, so that under
    pytest-xdist (`make test`: two workers, ``--dist load``) no worker is
    still running one when the other has nothing left to do.

    Django's order stays: a test in a rolled-back transaction never runs
    after a transactional one (whose flush takes away the rows migrations
    seed, such as the default FAQ), so a slow test moves up only within its
    kind; slow tests without a database (the benchmark smoke runs) go first
    of all."""
    def rank(item):
        kind, slow = _db_kind(item), item.get_closest_marker("slow") is not None
        return (-1, 0) if slow and kind == 2 else (kind, not slow)

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def default_risk_rules(request):
    """The rule set the migration ships, in every database test: transactional
    tests flush the tables, so without this a test would see them or not
    depending on what ran before it."""
    if request.node.get_closest_marker("django_db") is None and "db" not in request.fixturenames:
        return
    from django.apps import apps

    seed = importlib.import_module("riskctl.migrations.0003_default_rules")
    seed.forwards(apps, None)


@pytest.fixture(autouse=True)
def language_reset():
    """Each test starts in the shop's default language: a request in Chinese
    leaves it active on the thread (LocaleMiddleware does not undo it), and
    the next test on that worker would read its texts in Chinese."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def redis_clean():
    """Each test starts with empty queues, registries and rate-limit counters,
    and with every Redis circuit breaker closed (a test that stopped a Redis
    must not leave the next one failing fast)."""
    breakers_reset()
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection


@pytest.fixture
def run_worker():
    """Run every queued job (and the jobs those enqueue) in this process, then return."""

    def run() -> SimpleWorker:
        queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]
        worker = SimpleWorker(queues, connection=queues[0].connection)
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
        return worker

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collector:
    def __init__(self):
        self.messages = []
        self.refuse = False

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "451 Requested action aborted: try again later"
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server (aiosmtpd) on loopback; Django's SMTP backend points at it.

    ``smtp_server.messages`` holds received envelopes; set ``refuse = True``
    to make it answer 451 (a transient failure).
    """
    from aiosmtpd.controller import Controller

    collector = _Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    yield collector
    controller.stop()


EPAY_KEY = "TESTKEY123"


@pytest.fixture
def epay(settings):
    """EPay configured (merchant 1001, key EPAY_KEY). Query before credit is
    off here: this gateway does not exist; tests/payments/test_query_before_credit.py
    turns it on against a fake gateway."""
    settings.EPAY_PID = "1001"
    settings.EPAY_KEY = EPAY_KEY
    settings.EPAY_GATEWAY = "https://pay.example.com/submit.php"
    settings.EPAY_TYPE = ""
    settings.EPAY_QUERY_BEFORE_CREDIT = False
    settings.SITE_URL = "https://shop.example.com"
    return settings


@pytest.fixture
def make_product(db):
    counter = iter(range(1, 10_000))

    def make(*, keys: int = 0, price: str = "10.00", slug: str | None = None, **fields) -> Product:
        n = next(counter)
        product = Product.objects.create(
            slug=slug or f"product-{n}", name=fields.pop("name", f"Product {n}"), price=Decimal(price),
            currency=fields.pop("currency", "CNY"), **fields,
        )
        if keys:
            keys_import(
                product=product, source="test",
                entries=((i + 1, f"{product.slug.upper()}-KEY-{i:05d}") for i in range(keys)),
            )
        return product

    return make


@pytest.fixture
def make_unpaid_order(db):
    """An order awaiting payment, written directly (no checkout stock hold): the
    situation of a payment arriving after its hold lapsed, or many at once."""

    def make(*, product: Product, quantity: int = 1, email: str = "buyer@example.com") -> Order:
        _, token_hash = order_token_new()
        amount = product.price * quantity
        with transaction.atomic():
            order = Order.objects.create(
                order_no=f"T{Order.objects.count() + 1:08d}{product.pk:05d}", token_hash=token_hash,
                email=email, amount=amount, currency=product.currency,
            )
            OrderLine.objects.create(order=order, product=product, quantity=quantity, unit_price=product.price, amount=amount)
            Payment.objects.create(order=order, provider="sandbox", reference=order.order_no, amount=amount,
                                   currency=order.currency)
            OrderEvent.objects.create(order=order, type=OrderEventType.CREATED, actor="test")
        return order

    return make


@pytest.fixture
def pay(client, django_capture_on_commit_callbacks):
    """Pay an order through the sandbox notify (keys reserved, inbox written,
    email outbox enqueued); returns the order, refreshed."""

    def run(order):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(NOTIFY_URL, sandbox_notice(order)).content == b"success"
        order.refresh_from_db()
        return order

    return run


def sandbox_notice(order: Order, *, amount: str | None = None, trade_no: str | None = None,
                   currency: str | None = None, status: str = "SUCCESS", secret: str | None = None) -> dict:
    """The form fields of a sandbox notify for ``order``, signed (with ``secret`` if given)."""
    params = {
        "trade_no": trade_no or sandbox_trade_no(order.order_no),
        "out_trade_no": order.order_no,
        "amount": amount or f"{order.amount:.2f}",
        "currency": currency or order.currency,
        "trade_status": status,
    }
    params["sign"] = sandbox_sign(params, secret or settings.SANDBOX_SECRET)
    return params


NOTIFY_URL = "/payments/sandbox/notify"
