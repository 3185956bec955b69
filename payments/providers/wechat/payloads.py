"""WeChat's JSON as the plug-in reads it: yuan and fen, jsonb-safe evidence, typed fields."""

from __future__ import annotations

import hmac
import json
from decimal import ROUND_HALF_UP, Decimal

from payments.providers.base import CallbackRejected

CENT = Decimal("0.01")
MAX_FEN = 10**12  # Payment.amount holds 10 digits before the point


def wechat_fen(amount: Decimal) -> int:
    """Yuan as WeChat's integer fen."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def wechat_amount(fen) -> Decimal:
    """WeChat's integer fen as a 2-place Decimal of yuan."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0 or fen >= MAX_FEN:
        raise CallbackRejected("AMOUNT_INVALID", f"amount {fen!r} is not a whole number of fen")
    return (Decimal(fen) / 100).quantize(CENT)


def _json(data: bytes):
    """JSON as PostgreSQL's jsonb can keep it: no NaN or Infinity."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def _evidence(value):
    """A decoded JSON value fit for jsonb: no NUL characters in its text."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {_evidence(str(k)): _evidence(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_evidence(v) for v in value]
    return value


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _same(given, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), str(expected).encode())
