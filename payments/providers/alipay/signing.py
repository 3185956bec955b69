"""Alipay's RSA2: the string to sign, signing and verifying, the request timestamp, the loaded keys."""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import datetime
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from django.utils import timezone

from payments.providers.http import rsa_private_key_load, rsa_public_key_load

SIGN_TYPE = "RSA2"
SHANGHAI = ZoneInfo("Asia/Shanghai")  # Alipay reads the request timestamp as Beijing time
MAX_SIGN = 2048  # a 4096-bit key's sign is 684 base64 characters


class AlipayKeyInvalid(Exception):
    code = "KEY_INVALID"


def alipay_sign_content(params: dict, *, unsigned: tuple[str, ...] = ("sign",), skip_empty: bool = True) -> str:
    """The string to sign: parameters sorted by name, ``k=v`` joined with
    ``&``, raw values. A request leaves out ``sign`` and empty values; a
    notify is checked with ``unsigned=("sign", "sign_type"), skip_empty=False``."""
    return "&".join(
        f"{name}={params[name]}" for name in sorted(params)
        if name not in unsigned and not (skip_empty and params[name] in ("", None))
    )


def alipay_sign(content: str, private_key: RSAPrivateKey) -> str:
    """SHA256withRSA of ``content`` (UTF-8), base64."""
    return base64.b64encode(private_key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def alipay_sign_valid(content: str, sign: str, public_key: RSAPublicKey) -> bool:
    """Whether ``sign`` is Alipay's SHA256withRSA sign of ``content``. The
    comparison is inside the RSA verification (no early-exit string compare)."""
    if not isinstance(sign, str) or not sign or len(sign) > MAX_SIGN:
        return False
    try:
        raw = base64.b64decode("".join(sign.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def alipay_timestamp(now: datetime | None = None) -> str:
    """The request timestamp, Beijing time: ``2024-01-01 12:00:00``."""
    return (now or timezone.now()).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=16)
def _private_key(text: str) -> RSAPrivateKey:
    try:
        return rsa_private_key_load(text)
    except (ValueError, TypeError):
        raise AlipayKeyInvalid("ALIPAY_PRIVATE_KEY is not an RSA private key") from None


@functools.lru_cache(maxsize=16)
def _public_key(text: str) -> RSAPublicKey:
    try:
        return rsa_public_key_load(text)
    except (ValueError, TypeError):
        raise AlipayKeyInvalid("ALIPAY_PUBLIC_KEY is not an RSA public key") from None
