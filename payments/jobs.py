"""RQ jobs of payments: the applier of stored notices, the sandbox gateway's
notify (it lives in the worker, like a real gateway's servers) and the buyer's
refund email."""

import logging
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

from payments.models import Payment
from payments.providers.sandbox import NotifyMode, sandbox_notices
from payments.services import payment_notices_drain, refund_buyer_notify

logger = logging.getLogger(__name__)


class NotifyNotAcknowledged(Exception):
    """The shop did not answer ``success``: the gateway will try again."""


def sandbox_notify_send(reference: str, mode: str = NotifyMode.NORMAL) -> list[str]:
    """Send the gateway's notices for ``reference`` in order; raise unless every
    one was answered ``success`` (RQ then retries them all, as duplicates)."""
    payment = Payment.objects.get(reference=reference, provider="sandbox")
    replies = []
    for params in sandbox_notices(reference=reference, amount=payment.amount, currency=payment.currency, mode=mode):
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(settings.SANDBOX_NOTIFY_URL, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                replies.append(response.read(200).decode(errors="replace").strip())
        except urllib.error.HTTPError as exc:
            replies.append(f"HTTP {exc.code}")
    failed = [reply for reply in replies if reply != "success"]
    if failed:
        logger.warning("sandbox notify for %s not acknowledged: %s", reference, failed)
        raise NotifyNotAcknowledged(", ".join(failed))
    return replies


def payment_notices_drain_job(job_id: str | None = None) -> int:
    # job_id is None for a job enqueued before the wake-up flag held job ids.
    return payment_notices_drain(job_id=job_id)


def refund_email_send(refund_id: int) -> bool:
    return refund_buyer_notify(refund_id=refund_id)
