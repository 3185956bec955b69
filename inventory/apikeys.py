"""Merchant API keys for the key verification API.

A token is ``kd_<prefix>_<secret>``: the prefix (12 characters) finds the row,
the whole token is compared through its SHA-256 in constant time. The token
has 256 bits of entropy, so a plain hash (no slow KDF) is enough, and only
the hash is stored: the token is shown once, when the key is created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from inventory.models import MerchantApiKey

PREFIX_LENGTH = 12


class ApiKeyInvalid(Exception):
    """No live API key matches the token."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code  # AUTH_REQUIRED (unknown or malformed) or KEY_REVOKED


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def merchant_api_key_create(*, name: str, product_ids) -> tuple[MerchantApiKey, str]:
    """Create a key scoped to ``product_ids``; return it and its token (shown once)."""
    api_key = MerchantApiKey(name=name)
    token = merchant_api_key_token_attach(api_key=api_key)
    with transaction.atomic():
        api_key.save()
        api_key.products.set(list(product_ids))
    return api_key, token


def merchant_api_key_token_attach(*, api_key: MerchantApiKey) -> str:
    """Give an unsaved key (e.g. from the admin form) its prefix and hash;
    return the token. Call before the first save."""
    api_key.prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    token = f"kd_{api_key.prefix}_{secrets.token_urlsafe(32)}"
    api_key.secret_hash = _hash(token)
    return token


def merchant_api_key_revoke(*, api_key_ids) -> int:
    """Revoke the given keys (at once, for good); return how many were live."""
    return MerchantApiKey.objects.filter(pk__in=list(api_key_ids), revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def merchant_api_key_authenticate(*, token: str) -> MerchantApiKey:
    """The live key the token belongs to, or ``ApiKeyInvalid``."""
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "kd" or len(parts[1]) != PREFIX_LENGTH:
        raise ApiKeyInvalid("AUTH_REQUIRED", "Unknown API key.")
    api_key = MerchantApiKey.objects.filter(prefix=parts[1]).first()
    # Hash the token even when no row matched, so timing does not tell a known prefix apart.
    presented = _hash(token)
    stored = api_key.secret_hash if api_key is not None else "0" * 64
    if not hmac.compare_digest(presented, stored) or api_key is None:
        raise ApiKeyInvalid("AUTH_REQUIRED", "Unknown API key.")
    if api_key.revoked_at is not None:
        raise ApiKeyInvalid("KEY_REVOKED", "This API key was revoked.")
    return api_key
