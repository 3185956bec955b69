"""The key email's MIME message, written without email.generator: the same
bytes as Django's message, less the MIME-Version Django repeats in each part."""

import email
from email import policy

import pytest
from django.core.mail import EmailMultiAlternatives

from delivery.channels.email_message import KeyEmail, KeyEmailMessage
from delivery.services import deliveries_enqueue
from inventory.selectors import keys_for_order
from tests.delivery.conftest import email_of

HTML = '<!doctype html>\n<html lang="en"><body><p>Thank you for your order <strong>T1</strong>.</p>\n</body></html>\n'
CASES = {
    "English": {
        "subject": "Kamidrop: your key for order T0000000100001",
        "from_email": "Kamidrop <no-reply@kamidrop.local>", "to": ["buyer@example.com"],
        "body": "Thank you for your order T1.\n\nGift: KEY-1\n\nKamidrop\n", "html": HTML,
    },
    "Chinese": {
        "subject": "卡密小店：订单 T0000000100001 的卡密", "from_email": "卡密小店 <no-reply@kamidrop.cn>",
        "to": ["买家@例子.中国"], "body": "感谢您的订单 T1。\n\n礼品卡: 卡-1\n", "html": "<p>感谢您的订单</p>\n",
    },
    "long subject": {
        "subject": "Kamidrop: " + "your keys for order T0000000100001, " * 4,
        "from_email": "no-reply@kamidrop.local", "to": ["a.very.long.address.of.a.buyer@example.com"],
        "body": "x\n", "html": "<p>x</p>",
    },
    "odd lines": {
        "subject": "s", "from_email": "a@b.c", "to": ["d@e.f"],
        "body": "From here\r\n.dot\rcr\n\nend", "html": "a\r\nb",
    },
}


@pytest.mark.parametrize("case", CASES)
def test_the_key_email_is_djangos_message_less_the_repeated_mime_version(case, settings):
    # given
    fields = CASES[case]
    headers = {"Message-ID": "<delivery-1.T1@kamidrop.local>", "Date": "Sat, 05 Dec 2026 14:12:18 -0000"}
    ours, django = (cls(subject=fields["subject"], body=fields["body"], from_email=fields["from_email"],
                        to=fields["to"], headers=headers) for cls in (KeyEmail, EmailMultiAlternatives))
    for message in (ours, django):
        message.attach_alternative(fields["html"], "text/html")
    # when
    built = ours.message()
    reference = django.message()
    reference.set_boundary(built.boundary)
    # then
    assert isinstance(built, KeyEmailMessage)
    expected = reference.as_bytes(linesep="\r\n").split(b"\r\n\r\n", 1)
    expected = expected[0] + b"\r\n\r\n" + expected[1].replace(b"MIME-Version: 1.0\r\n", b"")
    assert built.as_bytes(linesep="\r\n") == expected
    assert built.as_bytes() == expected.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert built["Subject"] == reference["Subject"] and built["To"] == reference["To"]
    assert [p.get_payload(decode=True) for p in built.walk()][1:] == [
        p.get_payload(decode=True) for p in reference.walk()][1:]


def test_a_body_line_over_998_bytes_is_left_to_djangos_message():
    # given: a line that needs quoted-printable
    message = KeyEmail(subject="s", body="k" * 999, from_email="a@b.c", to=["d@e.f"])
    message.attach_alternative("<p>x</p>", "text/html")
    # when
    built = message.message()
    # then
    assert not isinstance(built, KeyEmailMessage)
    assert b"Content-Transfer-Encoding: quoted-printable" in built.as_bytes()


@pytest.mark.django_db
def test_the_key_email_says_mime_version_once_and_reads_as_before(paid_order, run_worker, smtp_server):
    # given
    import django_rq

    django_rq.get_queue("delivery").empty()
    delivery = email_of(paid_order)
    # when
    deliveries_enqueue(delivery_ids=[delivery.pk])
    run_worker()
    # then: one MIME-Version (Django's message has one per part as well: three)
    [envelope] = smtp_server.messages
    assert envelope.content.count(b"MIME-Version:") == 1
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    [key] = keys_for_order(order_id=paid_order.pk)
    assert message["Message-ID"] == f"<delivery-{delivery.pk}.{paid_order.order_no}@kamidrop.local>"
    assert message["Subject"] == f"Kamidrop: your key for order {paid_order.order_no}"
    assert message["To"] == "buyer@example.com"
    assert message["From"] == "Kamidrop <no-reply@kamidrop.local>"
    # (on the wire every line ends in CRLF)
    text = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert text.startswith(f"Thank you for your order {paid_order.order_no}.\n\n{key.product.display_name}: "
                           f"{key.secret}\n")
    assert f'<code style="font-size:1.1em">{key.secret}</code>' in html
