"""Sealing card keys at rest: authenticated encryption and fingerprints.

``KEY_ENCRYPTION_KEYS`` holds Fernet keys (AES-128-CBC + HMAC-SHA256); the
first encrypts and all decrypt, so a key can be rotated in. The fingerprint is
an HMAC-SHA256 under a separate pepper, so duplicates are found without
decrypting and rotation does not change it.
"""

import functools
import hashlib
import hmac

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def secret_seal(plaintext: str) -> bytes:
    return _fernet(tuple(settings.KEY_ENCRYPTION_KEYS)).encrypt(plaintext.encode())


def secret_open(sealed: bytes) -> str:
    return _fernet(tuple(settings.KEY_ENCRYPTION_KEYS)).decrypt(sealed).decode()


def secret_normalise(plaintext: str) -> str:
    return plaintext.strip()


def secret_fingerprint(plaintext: str) -> str:
    pepper = settings.KEY_FINGERPRINT_PEPPER.encode()
    return hmac.new(pepper, secret_normalise(plaintext).encode(), hashlib.sha256).hexdigest()


def secret_mask(plaintext: str) -> str:
    """Enough to tell keys apart in a list, too little to use: the last 4 characters."""
    tail = plaintext[-4:] if len(plaintext) > 8 else ""
    return f"••••{tail}"
