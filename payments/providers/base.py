from __future__ import annotations

from dataclasses import dataclass, field
import re
from decimal import Decimal

from django.http import HttpRequest, HttpResponse


@dataclass(frozen=True)
class CallbackNotice:
    """A provider notification whose signature has been verified, normalised."""

    external_id: str  # the provider's transaction id: the idempotency key
    reference: str  # our Payment.reference (the out_trade_no we sent)
    amount: Decimal
    currency: str
    succeeded: bool
    payload: dict = field(default_factory=dict)


class CallbackRejected(Exception):
    """The notification is not authentic or not well-formed: touch nothing."""

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


class PaymentProvider:
    id: str = ""

    def enabled(self) -> bool:
        return True

    def start(self, *, payment) -> str:
        """Return the URL to send the buyer to (absolute or site-relative)."""
        raise NotImplementedError

    def parse_callback(self, request: HttpRequest) -> CallbackNotice:
        """Verify the signature first, then normalise; raise CallbackRejected."""
        raise NotImplementedError

    def reply_accepted(self) -> HttpResponse:
        raise NotImplementedError

    def reply_rejected(self, code: str) -> HttpResponse:
        raise NotImplementedError
