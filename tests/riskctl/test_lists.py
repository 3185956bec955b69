"""Matching buyers against the allow and block lists (one query for a batch of buyers)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from riskctl.identity import BuyerContext
from riskctl.models import IdentifierKind, ListEntry, ListType
from riskctl.services.lists import list_matches_many

pytestmark = pytest.mark.django_db


def _entry(kind, value, *, list_type=ListType.BLOCK, expires_in=None):
    expires_at = None if expires_in is None else timezone.now() + expires_in
    return ListEntry.objects.create(list_type=list_type, kind=kind, value=value, reason=value, expires_at=expires_at)


def test_each_buyer_gets_the_live_entries_naming_one_of_its_identifiers():
    # given
    email = _entry(IdentifierKind.EMAIL, "ann@example.com")
    device = _entry(IdentifierKind.DEVICE, "dev-bob")
    phone = _entry(IdentifierKind.PHONE, "+8613800000000")
    domain = _entry(IdentifierKind.EMAIL_DOMAIN, "*.spam.example")
    network = _entry(IdentifierKind.IP, "203.0.113.0/24")
    allowed = _entry(IdentifierKind.EMAIL, "cat@example.com", list_type=ListType.ALLOW)
    _entry(IdentifierKind.EMAIL, "dan@example.com", expires_in=timedelta(seconds=-1))  # ended: matches nobody
    _entry(IdentifierKind.DEVICE, "", list_type=ListType.ALLOW)  # a device nobody gave: matches nobody
    buyers = [
        BuyerContext(email="ann@example.com", ip="198.51.100.1"),
        BuyerContext(email="bob@example.com", device="dev-bob", phone="+8613800000000"),
        BuyerContext(email="eve@mail.spam.example", ip="203.0.113.9"),
        BuyerContext(email="cat@example.com"),
        BuyerContext(email="dan@example.com"),
    ]
    # when
    with CaptureQueriesContext(connection) as queries:
        matched = list_matches_many(list_type=None, buyers=buyers)
    # then
    assert len(queries) == 1
    assert [[entry.pk for entry in entries] for entries in matched] == [
        [email.pk], [device.pk, phone.pk], [domain.pk, network.pk], [allowed.pk], [],
    ]


def test_one_list_only_when_asked_and_nothing_for_no_buyers():
    # given
    blocked = _entry(IdentifierKind.EMAIL, "ann@example.com", expires_in=timedelta(hours=1))
    _entry(IdentifierKind.EMAIL, "ann@example.com", list_type=ListType.ALLOW)
    ann = BuyerContext(email="ann@example.com")
    # when / then
    assert [[entry.pk for entry in entries]
            for entries in list_matches_many(list_type=ListType.BLOCK, buyers=[ann])] == [[blocked.pk]]
    assert len(list_matches_many(list_type=None, buyers=[ann])[0]) == 2
    assert list_matches_many(list_type=None, buyers=[]) == []
