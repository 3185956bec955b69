"""Who may see an order: the holder of its access token or of a signed link."""

import hashlib
import hmac
import secrets

from django.core import signing
from django.http import Http404
from django.utils.crypto import salted_hmac

from shop.models import Order
from shop.selectors import order_by_number

_LINK_SALT = "kamidrop.order-link"
SESSION_ORDERS = "orders"
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


def order_session_grant(request, order_no: str) -> None:
    """Let this browser open the order page from now on (the last 50 orders)."""
    orders = request.session.get(SESSION_ORDERS, [])
    if order_no not in orders:
        request.session[SESSION_ORDERS] = [*orders[-49:], order_no]


def order_for_session(request, order_no: str) -> Order:
    """The order, if this browser may see it; otherwise the same 404 whether or
    not the order exists (no order-number probing)."""
    order = order_by_number(order_no=order_no)
    if order is not None and order_no in request.session.get(SESSION_ORDERS, []):
        return order
    raise Http404("order not found")


def site_id() -> str:
    """This shop's public name tag, in /healthz: the payment doctor fetches
    SITE_URL's health answer and compares it, to tell this shop from another
    server answering at that address. Derived from SECRET_KEY, revealing nothing."""
    return salted_hmac("kamidrop-site-id", "site").hexdigest()[:16]
