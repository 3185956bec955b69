"""Fixtures of the delivery tests: paid orders, an SMTP server that refuses some recipients."""

import pytest

from delivery.models import Channel, Delivery

REFUSED_PREFIX = "nobody@"


@pytest.fixture
def paid_order(pay, make_product, make_unpaid_order):
    return pay(make_unpaid_order(product=make_product(keys=2, slug="gift"), quantity=1, email="buyer@example.com"))


@pytest.fixture
def refusing_smtp(smtp_server):
    """The real SMTP server, answering 550 to RCPT for addresses starting with ``nobody@``."""

    async def handle_RCPT(server, session, envelope, address, rcpt_options):
        if address.startswith(REFUSED_PREFIX):
            return "550 5.1.1 Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp_server.handle_RCPT = handle_RCPT  # looked up per connection
    return smtp_server


def email_of(order) -> Delivery:
    return Delivery.objects.get(order=order, channel=Channel.EMAIL)
