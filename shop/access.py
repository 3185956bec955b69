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
SESSION_ORDER_VERSIONS = "order_versions"  # {order_no: link_version when granted}
SESSION_EMAILS = "order_emails"  # emails signed in with a sign-in link
LINK_MAX_AGE = 60 * 60 * 24 * 90  # emailed links open the order page for 90 days


def order_token_new() -> tuple[str, str]:
    """A fresh access token and the hash to store (the token is shown only once)."""
    token = secrets.token_urlsafe(24)
    return token, order_token_hash(token)


def order_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def order_token_matches(*, order, token: str) -> bool:
    return hmac.compare_digest(order.token_hash, order_token_hash(token or ""))


def order_link_sign(order_no: str, version: int = 1) -> str:
    """The ``?s=`` of an order link: the order number and the order's
    ``link_version``, signed. Staff revoke every link of an order by bumping
    the version (``shop.services.order_links``)."""
    return signing.dumps([order_no, version], salt=_LINK_SALT, compress=True)


def order_link_matches(*, order: Order, signed: str) -> bool:
    """Whether ``signed`` is a live link to ``order``. A link signed before
    links carried a version (the order number alone) was emailed while every
    order was at version 1: it opens the order until staff revoke its links."""
    try:
        value = signing.loads(signed or "", salt=_LINK_SALT, max_age=LINK_MAX_AGE)
    except signing.BadSignature:
        return False
    if isinstance(value, str):
        return value == order.order_no and order.link_version == 1
    if isinstance(value, list) and len(value) == 2:
        return value[0] == order.order_no and value[1] == order.link_version
    return False


def order_session_grant(request, order_no: str, *, version: int = 1) -> None:
    """Let this browser open the order page from now on (the last 50 orders),
    for as long as the order's links are not revoked (``version``)."""
    orders = [no for no in request.session.get(SESSION_ORDERS, []) if no != order_no]
    kept = [*orders[-49:], order_no]
    request.session[SESSION_ORDERS] = kept
    versions = request.session.get(SESSION_ORDER_VERSIONS, {})
    request.session[SESSION_ORDER_VERSIONS] = {no: versions[no] for no in kept if no in versions} | {order_no: version}


def order_session_allows(request, order: Order) -> bool:
    """Whether this browser may see ``order``: it opened the order (by a link,
    the lookup or checkout) and its links were not revoked since, or it signed
    in with the order's email ("all my orders", which revoking links leaves be).
    A grant without a version predates versions: version 1."""
    if order.order_no in request.session.get(SESSION_ORDERS, []):
        if request.session.get(SESSION_ORDER_VERSIONS, {}).get(order.order_no, 1) == order.link_version:
            return True
    return order.email.strip().lower() in request.session.get(SESSION_EMAILS, [])


def order_for_session(request, order_no: str) -> Order:
    """The order, if this browser may see it; otherwise the same 404 whether or
    not the order exists (no order-number probing)."""
    order = order_by_number(order_no=order_no)
    if order is not None and order_session_allows(request, order):
        return order
    raise Http404("order not found")


def session_emails(request) -> list[str]:
    """The emails this browser signed in with (``all my orders``)."""
    return list(request.session.get(SESSION_EMAILS, []))


def session_email_grant(request, email: str) -> None:
    """Let this browser see every order of ``email`` (the last 5 emails)."""
    email = email.strip().lower()
    emails = [e for e in request.session.get(SESSION_EMAILS, []) if e != email]
    request.session[SESSION_EMAILS] = [*emails[-4:], email]


def session_emails_forget(request) -> None:
    """"Sign out of these orders": the emails' orders close in this browser."""
    request.session.pop(SESSION_EMAILS, None)


def site_id() -> str:
    """This shop's public name tag, in /healthz: the payment doctor fetches
    SITE_URL's health answer and compares it, to tell this shop from another
    server answering at that address. Derived from SECRET_KEY, revealing nothing."""
    return salted_hmac("kamidrop-site-id", "site").hexdigest()[:16]
