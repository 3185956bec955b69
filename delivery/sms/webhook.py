"""A generic signed HTTP webhook for local SMS gateways (a modem box, a
carrier's HTTP API behind a small adapter).

POST ``SMS_WEBHOOK_URL`` with JSON ``{"to", "text", "idempotency_key"}`` and
the headers ``Idempotency-Key``, ``X-Kamidrop-Timestamp`` and
``X-Kamidrop-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with
SMS_WEBHOOK_SECRET>``. A 2xx answer may carry ``{"id": "..."}``; a 4xx (but
408 and 429) is a permanent refusal; anything else is retried.
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from django.conf import settings

from delivery.channels.base import PermanentDeliveryError

TIMEOUT_SECONDS = 10
RETRYABLE_4XX = {408, 425, 429}


def webhook_sign(*, secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookSmsBackend:
    def send(self, *, to: str, text: str, idempotency_key: str) -> str:
        body = json.dumps({"to": to, "text": text, "idempotency_key": idempotency_key}).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            settings.SMS_WEBHOOK_URL, data=body, method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
                "X-Kamidrop-Timestamp": timestamp,
                "X-Kamidrop-Signature": webhook_sign(secret=settings.SMS_WEBHOOK_SECRET, timestamp=timestamp, body=body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            # Only the status goes into the error: the gateway may echo the text (the key).
            if 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX:
                raise PermanentDeliveryError(f"SMS gateway refused with HTTP {exc.code}") from None
            raise RuntimeError(f"SMS gateway answered HTTP {exc.code}") from None
        try:
            return str(json.loads(answer or b"{}").get("id", ""))
        except (ValueError, AttributeError):
            return ""
