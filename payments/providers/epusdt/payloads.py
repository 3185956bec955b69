"""The gateway's JSON as the plug-in reads it: objects, numbers as epusdt meant them, trade statuses, USDT text."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from payments.providers.epusdt.signing import _sign_text, _Unsignable


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_object(raw: bytes) -> dict | None:
    """A JSON object (numbers as Python floats, as epusdt's own float64s), or None."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _decimal(value) -> Decimal | None:
    """A number (or numeric text) of an answer as a Decimal, as epusdt meant it."""
    try:
        text = _sign_text(value)
    except _Unsignable:
        return None
    if not text.isascii():  # Decimal() reads full-width and other Unicode digits: money is ASCII
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _status_text(value) -> str:
    """A trade status (1, 2, 3) as text; "" when it is not a whole number."""
    try:
        text = _sign_text(value)
    except _Unsignable:
        return ""
    return text if text.isascii() and text.isdigit() else ""


def usdt_text(amount: Decimal) -> str:
    """A USDT amount for the buyer: two places at least, four at most (1.70, 1.7571)."""
    return f"{amount:.2f}" if amount == amount.quantize(Decimal("0.01")) else f"{amount.normalize():f}"
