"""RQ jobs of the shop's buyer-side emails. Jobs take ids and are idempotent."""

from shop.services.signin import signin_link_email_send
from shop.services.stock_alerts import stock_alerts_notify


def stock_alerts_notify_job(product_id: int) -> int:
    """Email the buyers waiting for the product (after keys were imported).
    Raises on a failed send, so RQ retries it on the delivery schedule."""
    return stock_alerts_notify(product_id=product_id)


def signin_link_email_job(link_id: int, language: str) -> None:
    signin_link_email_send(link_id=link_id, language=language)
