"""The epusdt MD5 signature: values written as epusdt writes them, signing, and the constant-time check."""

from __future__ import annotations

import hashlib
import hmac
import math
from decimal import Decimal


class EpusdtTokenMissing(Exception):
    code = "EPUSDT_TOKEN_MISSING"


class _Unsignable(ValueError):
    """A value epusdt cannot sign (an object, a list, a boolean): its own
    signer fails on it, so no genuine message carries one."""


def _go_float(value) -> str:
    """A number as epusdt writes it in the string to sign: parsed into a Go
    float64, printed at its shortest without exponent (12.3, 12, 0.0001)."""
    try:
        as_float = float(value)
    except (OverflowError, ValueError):
        raise _Unsignable("not a finite number") from None
    if not math.isfinite(as_float):
        raise _Unsignable("not a finite number")
    return format(Decimal(repr(as_float)).normalize(), "f")


def _sign_text(value) -> str:
    if isinstance(value, bool):
        raise _Unsignable("a boolean")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return _go_float(value)
    raise _Unsignable(type(value).__name__)


def epusdt_sign(params: dict, token: str) -> str:
    """The epusdt MD5 signature of ``params`` under the api ``token``."""
    if not token:
        # An empty token would make every signature computable by anyone.
        raise EpusdtTokenMissing("EPUSDT_TOKEN is empty: refusing to sign or verify")
    pairs = []
    for name, value in params.items():
        if name == "signature" or value is None:
            continue
        text = _sign_text(value)
        if text != "":
            pairs.append(f"{name}={text}")
    return hashlib.md5(("&".join(sorted(pairs)) + token).encode()).hexdigest()


def epusdt_sign_valid(params: dict, token: str) -> bool:
    """Constant-time check of ``params["signature"]``."""
    given = params.get("signature", "")
    try:
        expected = epusdt_sign(params, token)
    except _Unsignable:
        return False
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))
