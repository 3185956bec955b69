"""The provider plug-in interface and the normalised notice every provider produces."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.http import HttpRequest, HttpResponse


class NoticeKind:
    PAYMENT = "PAYMENT"  # money arrived (or a status report about that payment)
    REFUND = "REFUND"  # the provider refunded the payment (e.g. from its dashboard)
    DISPUTE = "DISPUTE"  # the buyer disputed the payment (chargeback)


@dataclass(frozen=True)
class CallbackNotice:
    """A provider notification whose signature has been verified, normalised.

    ``external_id`` is the idempotency key of the notice (unique per provider).
    ``transaction_id`` is the provider's id of the payment itself; it defaults
    to ``external_id`` (gateways that send one notice per trade) and differs
    where one payment has many notices (a Stripe event id vs its payment intent).
    """

    external_id: str
    reference: str  # our Payment.reference (the out_trade_no we sent); "" when unknown
    amount: Decimal
    currency: str
    succeeded: bool
    payload: dict = field(default_factory=dict)  # the raw parameters / body, kept as evidence
    kind: str = NoticeKind.PAYMENT
    transaction_id: str = ""
    verification: str = ""  # how the notice was authenticated, e.g. "MD5 sign valid"

    @property
    def payment_id(self) -> str:
        return self.transaction_id or self.external_id


class CallbackRejected(Exception):
    """The notification is not authentic or not well-formed: touch nothing."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True)
class RefundResult:
    MANUAL = "MANUAL"
    SUCCEEDED = "SUCCEEDED"

    status: str  # SUCCEEDED: the money is on its way back; MANUAL: the owner must refund by hand
    external_id: str = ""
    instructions: str = ""  # for MANUAL: what the owner has to do


class RefundFailed(Exception):
    """The provider refused or could not be reached: nothing was refunded."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code


_MONEY = re.compile(r"^\d{1,10}(\.\d{1,2})?$")


def money_parse(raw: str) -> Decimal:
    """A provider's amount ("12", "12.5", "12.50") as a 2-place Decimal.

    Plain digits only: no sign, exponent, NaN or third decimal place.
    """
    if not isinstance(raw, str) or not _MONEY.match(raw):
        raise CallbackRejected("AMOUNT_INVALID", f"amount {raw!r} is not a positive 2-place amount")
    value = Decimal(raw).quantize(Decimal("0.01"))
    if value <= 0:
        raise CallbackRejected("AMOUNT_INVALID", f"amount {raw!r} is not positive")
    return value


def text_field(params: dict, name: str, *, max_length: int, required: bool = True) -> str:
    """A parameter as plain text fit for the database: bounded, no NUL or control characters."""
    value = params.get(name, "")
    if not isinstance(value, str):
        raise CallbackRejected("PAYLOAD_INVALID", f"{name} is not text")
    if required and not value:
        raise CallbackRejected("PAYLOAD_INVALID", f"{name} is required")
    if len(value) > max_length or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise CallbackRejected("PAYLOAD_INVALID", f"{name} is malformed")
    return value


def payload_clean(params: dict) -> dict:
    """Parameters as stored evidence: PostgreSQL's jsonb cannot hold NUL characters."""
    return {str(k).replace("\x00", "\\u0000"): str(v).replace("\x00", "\\u0000") for k, v in params.items()}


class PaymentProvider:
    """A payment provider, loaded by dotted path from ``PAYMENT_PROVIDERS``.

    ``parse_callback`` must verify the signature before anything else and
    never touch the database; the paid flow (payments.services) does the rest.
    """

    id: str = ""
    # HTTP methods the provider's notify may use; others are answered 405.
    notify_methods: tuple[str, ...] = ("POST",)

    def enabled(self) -> bool:
        return True

    def start(self, *, payment) -> str:
        """Return the URL to send the buyer to (absolute or site-relative).
        May call the provider: never call it inside a transaction."""
        raise NotImplementedError

    def parse_callback(self, request: HttpRequest) -> CallbackNotice | None:
        """Verify the signature first, then normalise; raise CallbackRejected.
        ``None``: authentic, but nothing the shop acts on (answer accepted)."""
        raise NotImplementedError

    def reply_accepted(self) -> HttpResponse:
        raise NotImplementedError

    def reply_rejected(self, code: str) -> HttpResponse:
        raise NotImplementedError

    def refund(self, *, payment, amount: Decimal) -> RefundResult:
        """Give ``amount`` of ``payment`` back; raise RefundFailed. A network
        call: never inside a transaction."""
        raise RefundFailed("REFUND_UNSUPPORTED", f"{self.id} cannot refund")

    def query(self, *, payment) -> CallbackNotice | None:
        """Ask the provider whether ``payment`` was paid (reconciliation): a
        success notice when it was, else ``None``. A network call."""
        return None
