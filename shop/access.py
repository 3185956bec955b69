"""Who may see an order: the holder of its access token or of a signed link."""

import hashlib
import hmac
import secrets

from django.core import signing

_LINK_SALT = "kamidrop.order-link"
LINK_MAX_AGE = 60 * 60 * 24 * 90  # emailed links open the order page for 90 days


def order_token_new() -> tuple[str, str]:
    """A fresh access token and the hash to store (the token is shown only once)."""
    token = secrets.token_urlsafe(24)
    return token, order_token_hash(token)


def order_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def order_token_matches(*, order, token: str) -> bool:
    return hmac.compare_digest(order.token_hash, order_token_hash(token or ""))


def order_link_sign(order_no: str) -> str:
    return signing.dumps(order_no, salt=_LINK_SALT, compress=True)


def order_link_matches(*, order_no: str, signed: str) -> bool:
    try:
        return signing.loads(signed, salt=_LINK_SALT, max_age=LINK_MAX_AGE) == order_no
    except signing.BadSignature:
        return False
