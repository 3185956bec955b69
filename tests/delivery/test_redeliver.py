"""manage.py redeliver: the same keys again, by order numbers or filters; dry run; exit code."""

from datetime import timedelta
from io import StringIO

import django_rq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.models import Delivery, DeliveryStatus
from inventory.models import CardKey
from shop.models import OrderEventType
from tests.delivery.conftest import email_of

pytestmark = pytest.mark.django_db


def _redeliver(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("redeliver", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def dead_letter(pay, make_product, make_unpaid_order, run_worker, smtp_server, settings):
    """A paid order whose email failed for good (no retries configured, server refusing)."""
    settings.DELIVERY_RETRY_SCHEDULE = []
    order = pay(make_unpaid_order(product=make_product(keys=1, slug="dead"), email="late@example.com"))
    smtp_server.refuse = True
    run_worker()
    smtp_server.refuse = False
    assert email_of(order).status == DeliveryStatus.FAILED
    return order


def test_dry_run_prints_the_table_and_sends_nothing(dead_letter, paid_order, run_worker, smtp_server):
    # given: one dead letter, one delivered order
    run_worker()
    delivery = email_of(dead_letter)
    # when
    out, _ = _redeliver("--failed-only", "--dry-run")
    # then
    assert out.splitlines() == [
        "ORDER           CHANNEL  TO                STATUS  ATTEMPTS  LAST ERROR",
        f"{dead_letter.order_no}  EMAIL    l***@example.com  FAILED  1         "
        "SMTPDataError: (451, b'Requested action aborted: try again l",
        "1 deliveries would be sent again (dry run: nothing sent)",
    ]
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.FAILED
    assert len(smtp_server.messages) == 1  # only the delivered order's email
    assert dead_letter.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 0


def test_failed_only_sends_the_same_keys_again_and_summarises(dead_letter, smtp_server):
    # given
    delivery = email_of(dead_letter)
    key = CardKey.objects.get(order_line__order=dead_letter)
    # when
    out, err = _redeliver("--failed-only")
    # then
    assert out == "1 selected: 1 sent, 0 not sent, 0 skipped\n"
    assert "redeliver: 100%" in err
    delivery.refresh_from_db()
    assert (delivery.status, delivery.resends, delivery.attempts) == (DeliveryStatus.SENT, 1, 1)
    assert delivery.provider_message_id == f"<delivery-{delivery.pk}.r1.{dead_letter.order_no}@kamidrop.local>"
    assert len(smtp_server.messages) == 1
    assert key.secret.encode() in smtp_server.messages[0].content
    assert CardKey.objects.filter(order_line__order=dead_letter).count() == 1
    event = dead_letter.events.get(type=OrderEventType.RESEND_REQUESTED)
    assert (event.actor, event.data) == ("ops:redeliver", {"channels": ["EMAIL"]})
    dead_letter.refresh_from_db()
    assert dead_letter.status == "DELIVERED"


def test_exit_code_is_non_zero_when_something_could_not_be_sent(dead_letter, smtp_server):
    # given: the mail server is still refusing
    smtp_server.refuse = True
    delivery = email_of(dead_letter)
    # when
    with pytest.raises(CommandError) as failure:
        _redeliver(dead_letter.order_no)
    # then: it stays queued for the normal retries
    assert failure.value.returncode == 1
    assert str(failure.value) == "1 deliveries could not be sent, 0 reported keys not replaced"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert django_rq.get_queue("delivery").job_ids == [delivery.job_id]


def test_filters_select_by_product_channel_status_and_time(pay, make_product, make_unpaid_order, run_worker,
                                                            smtp_server):
    # given: three delivered orders of two products, one of them older
    gift, game = make_product(keys=2, slug="gift"), make_product(keys=1, slug="game")
    old, new = pay(make_unpaid_order(product=gift)), pay(make_unpaid_order(product=gift))
    other = pay(make_unpaid_order(product=game))
    run_worker()
    Delivery.objects.filter(order=old).update(created_at=timezone.now() - timedelta(days=3))
    since = (timezone.localdate() - timedelta(days=1)).isoformat()

    def selected(*args) -> list[str]:
        out, _ = _redeliver(*args, "--dry-run")
        return [line.split()[0] for line in out.splitlines()[1:-1]]

    # when / then
    assert selected("--product", "gift") == [old.order_no, new.order_no]
    assert selected("--product", "gift", "--since", since) == [new.order_no]
    assert selected("--until", since) == [old.order_no]
    assert selected("--channel", "EMAIL", "--status", "SENT") == [old.order_no, new.order_no, other.order_no]
    assert selected("--channel", "SMS") == []
    assert selected(other.order_no) == [other.order_no]
    assert len(smtp_server.messages) == 3


def test_refuses_to_redeliver_everything_without_a_selection():
    # when
    with pytest.raises(CommandError) as refused:
        _redeliver()
    # then
    assert str(refused.value) == "name order numbers or give at least one filter (redelivering everything is refused)"


@pytest.fixture
def reported(pay, make_product, make_unpaid_order, run_worker, smtp_server):
    """A delivered order whose buyer reported the key as not working (no automatic replacement)."""
    from shop.services.buyer import order_key_report

    product = make_product(keys=1, slug="rep")
    order = pay(make_unpaid_order(product=product, email="r@example.com"))
    run_worker()
    key = CardKey.objects.get(order_line__order=order)
    order_key_report(order_id=order.pk, key_id=key.pk, reason="code rejected", ip=None)
    return order, product, key


def test_replace_invalid_voids_the_reported_key_and_sends_a_new_one(reported, run_worker, smtp_server):
    # given
    from inventory.services import key_entries, keys_import
    from shop.models import KeyReport, KeyReportStatus

    order, product, old = reported
    keys_import(product=product, source="t", entries=key_entries(["REP-NEW-0001"]))
    before = len(smtp_server.messages)
    # when
    out, _ = _redeliver(order.order_no, "--replace-invalid", "--yes")
    # then
    old.refresh_from_db()
    new = CardKey.objects.get(order_line__order=order, status="DELIVERED")
    assert (old.status, new.secret) == ("VOID", "REP-NEW-0001")
    assert "1 reported keys replaced" in out
    assert KeyReport.objects.get().status == KeyReportStatus.RESOLVED
    assert len(smtp_server.messages) == before + 1
    assert b"REP-NEW-0001" in smtp_server.messages[-1].content
    assert old.secret.encode() not in smtp_server.messages[-1].content
    assert order.events.filter(type=OrderEventType.KEY_REPLACED).count() == 1


def test_replace_invalid_needs_confirmation_when_not_interactive(reported):
    # given
    order, _, old = reported
    # when / then: no TTY and no --yes
    with pytest.raises(CommandError, match="^REPLACE_NEEDS_CONFIRMATION"):
        _redeliver(order.order_no, "--replace-invalid")
    old.refresh_from_db()
    assert old.status == "DELIVERED"


def test_replace_invalid_without_stock_replaces_nothing_and_exits_non_zero(reported):
    # given: no key left to replace it with
    order, _, old = reported
    # when
    with pytest.raises(CommandError) as failure:
        _redeliver(order.order_no, "--replace-invalid", "--yes")
    # then
    assert str(failure.value) == "0 deliveries could not be sent, 1 reported keys not replaced"
    old.refresh_from_db()
    assert old.status == "DELIVERED"


def test_since_accepts_today_and_yesterday(pay, make_product, make_unpaid_order, run_worker):
    # given: one delivery of two days ago, one of now
    product = make_product(keys=2, slug="gift")
    old, new = pay(make_unpaid_order(product=product)), pay(make_unpaid_order(product=product))
    run_worker()
    Delivery.objects.filter(order=old).update(created_at=timezone.now() - timedelta(days=2))
    # when
    yesterday, _ = _redeliver("--since", "yesterday", "--dry-run")
    today, _ = _redeliver("--since", "today", "--dry-run")
    before, _ = _redeliver("--until", "yesterday", "--dry-run")
    # then
    assert [line.split()[0] for line in yesterday.splitlines()[1:-1]] == [new.order_no]
    assert [line.split()[0] for line in today.splitlines()[1:-1]] == [new.order_no]
    assert [line.split()[0] for line in before.splitlines()[1:-1]] == [old.order_no]


@pytest.mark.parametrize("value", ["2026-13-01", "soon", "2026-02-30T08:00"])
def test_a_bad_date_is_refused_with_the_formats_that_work(value, paid_order, run_worker, smtp_server):
    # given
    run_worker()
    # when
    with pytest.raises(CommandError) as refused:
        _redeliver("--since", value)
    # then: nothing was sent again
    assert str(refused.value) == (
        f"Error: argument --since: not a date: {value!r} "
        "(use today, yesterday, 2026-11-22 or 2026-11-22T08:00)"
    )
    assert len(smtp_server.messages) == 1
    assert paid_order.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 0


def test_an_unknown_order_number_is_named_and_nothing_is_sent(paid_order, run_worker, smtp_server):
    # given
    run_worker()
    # when
    with pytest.raises(CommandError) as refused:
        _redeliver(paid_order.order_no, "T99999999")
    # then
    assert (str(refused.value), refused.value.returncode) == ("order T99999999 not found", 1)
    assert len(smtp_server.messages) == 1
    assert paid_order.events.filter(type=OrderEventType.RESEND_REQUESTED).count() == 0


def test_the_console_email_backend_never_prints_a_key_in_full(paid_order, run_worker, settings, capsys):
    # given: the order was delivered; email now goes to the console (development)
    run_worker()
    key = CardKey.objects.get(order_line__order=paid_order)
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    capsys.readouterr()
    # when
    out, _ = _redeliver(paid_order.order_no)
    # then
    printed = capsys.readouterr().out
    assert out == "1 selected: 1 sent, 0 not sent, 0 skipped\n"
    assert f"Thank you for your order {paid_order.order_no}." in printed
    assert f"Product 1: ••••{key.secret[-4:]}" in printed
    assert key.secret not in printed
    assert email_of(paid_order).status == DeliveryStatus.SENT
