"""RQ jobs of the sandbox gateway (it lives in the worker, like a real gateway's servers)."""

import logging
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

from payments.models import Payment
from payments.providers.sandbox import SIGNED_FIELDS, sandbox_sign, sandbox_trade_no

logger = logging.getLogger(__name__)


class NotifyNotAcknowledged(Exception):
    """The shop did not answer ``success``: the gateway will try again."""


def sandbox_notify_send(reference: str) -> str:
    payment = Payment.objects.get(reference=reference, provider="sandbox")
    params = {
        "trade_no": sandbox_trade_no(reference),
        "out_trade_no": reference,
        "amount": f"{payment.amount:.2f}",
        "currency": payment.currency,
        "trade_status": "SUCCESS",
    }
    assert set(params) == set(SIGNED_FIELDS)
    params["sign"] = sandbox_sign(params, settings.SANDBOX_SECRET)
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(settings.SANDBOX_NOTIFY_URL, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            reply = response.read(200).decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        reply = f"HTTP {exc.code}"
    if reply != "success":
        logger.warning("sandbox notify for %s not acknowledged: %s", reference, reply)
        raise NotifyNotAcknowledged(reply)
    return reply
