"""The provider plug-in interface and the normalised notice every provider produces."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
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


# [0-9], not \d: \d and Decimal() also take full-width, Arabic-Indic and other
# Unicode digits, which no gateway means as an amount (issue 18). \Z: "$" allows a "\n".
_MONEY = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?\Z")


def money_parse(raw: str) -> Decimal:
    """A provider's amount ("12", "12.5", "12.50") as a 2-place Decimal.

    Plain ASCII digits only: no sign, exponent, NaN, third decimal place or
    other scripts' digits ("１５.００", "١٥").
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


class ProviderUnreachable(Exception):
    """The provider could not tell (timeout, HTTP error, an answer that fails
    its signature or makes no sense): the caller keeps what it has and tries
    again later. Never read as "not paid"."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code


class PayActionKind:
    REDIRECT = "REDIRECT"  # send the buyer's browser to ``url``
    FORM = "FORM"  # post ``fields`` to ``url`` from an auto-submitted form
    QR = "QR"  # show ``qr`` as a QR code on the shop's own pay page


@dataclass(frozen=True)
class PayAction:
    """How the buyer is handed to the provider, as ``start`` decides.

    Stored on the Payment (``pay_action``) so the pay page can be shown
    again (the buyer reloads, or comes back from the order page's Pay now)
    without asking the provider twice.
    """

    kind: str
    url: str = ""  # REDIRECT: where to go; FORM: the form's action
    fields: dict = field(default_factory=dict)  # FORM: the fields to post
    qr: str = ""  # QR: the content to encode (https://qr.alipay.com/…, weixin://wxpay/…, a TRON address)
    app_url: str = ""  # QR: a link that opens the payer's app on a phone, if the provider has one
    amount: str = ""  # what the buyer pays at the provider, when it differs from the order (e.g. USDT)
    currency: str = ""
    address: str = ""  # crypto: the wallet to pay to
    checkout_id: str = ""  # the provider's id of the checkout it opened (kept on Payment.checkout_id)

    def as_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", {}, None)}

    @classmethod
    def from_json(cls, data: dict) -> "PayAction":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


@dataclass(frozen=True)
class ProbeResult:
    """What the payment doctor learnt from asking the provider about an order
    that does not exist. ``ok`` when the provider answered "not found" to a
    properly signed request (so the credentials work)."""

    ok: bool
    code: str  # OK, AUTH_FAILED, UNREACHABLE, BAD_ANSWER, NOT_SUPPORTED
    detail: str = ""
    fix: str = ""
    server_time: "datetime | None" = None  # the provider's clock (its HTTP Date header), for the skew check


class PaymentProvider:
    """A payment provider plug-in, loaded by dotted path from
    ``PAYMENT_PROVIDERS`` and bound to one payment method's configuration
    (``self.config``: the merchant, its gateway and its credentials), so two
    merchants of one provider live side by side.

    ``parse_callback`` must verify the signature before anything else and
    never touch the database; the paid flow (payments.services) does the rest.
    """

    plugin: str = ""  # the plug-in's id: sandbox, epay, stripe, alipay, wechat, epusdt
    # HTTP methods the provider's notify may use; others are answered 405.
    notify_methods: tuple[str, ...] = ("POST",)
    # Credentials the plug-in needs (``config.secret(name)``) and the plain
    # settings (MethodConfig attributes) it cannot work without.
    required_secrets: tuple[str, ...] = ()
    required_settings: tuple[str, ...] = ()
    # Whether ``query`` can confirm a notice before it pays an order.
    can_query: bool = False
    # Whether ``start`` makes its pay action without a network call (it signs
    # locally): checkout then runs it inside the order's transaction and
    # stores the action with the payment's INSERT instead of an UPDATE after.
    start_offline: bool = False

    def __init__(self, config):
        self.config = config

    @property
    def id(self) -> str:
        """The payment method's id: ``Payment.provider``, the notify URL's name."""
        return self.config.id

    def enabled(self) -> bool:
        return all(self.config.secret(name) for name in self.required_secrets) and all(
            getattr(self.config, name) for name in self.required_settings
        )

    def notify_url(self) -> str:
        return self.config.notify_url()

    def start(self, *, payment) -> PayAction:
        """How to hand the buyer to the provider for ``payment``. May call
        the provider: never call it inside a transaction, unless
        ``start_offline``. ``payment`` may not be saved yet."""
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
        """Ask the provider whether ``payment`` was paid (reconciliation, 补单,
        query before credit): a success notice when it was, ``None`` when the
        provider answers that it was not (or does not know the order); raise
        ProviderUnreachable when it cannot tell. A network call."""
        return None

    def probe(self) -> ProbeResult:
        """For the payment doctor: ask about an order that does not exist,
        signed as usual. A network call."""
        return ProbeResult(ok=True, code="NOT_SUPPORTED", detail=f"{self.plugin} has no query API to test")
