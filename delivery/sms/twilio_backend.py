"""Twilio through its SDK. Twilio's Messages API takes no idempotency key, so
the lease taken by ``deliveries_claim`` is what keeps a retry from doubling a text."""

from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from delivery.channels.base import PermanentDeliveryError

# Twilio error codes that no retry can fix: invalid, unreachable or
# unsubscribed number, not a mobile number, region not enabled.
PERMANENT_CODES = {21211, 21214, 21408, 21610, 21612, 21614, 21617}


class TwilioSmsBackend:
    def __init__(self, client: Client | None = None):
        self.client = client or Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)

    def send(self, *, to: str, text: str, idempotency_key: str) -> str:
        try:
            message = self.client.messages.create(to=to, from_=settings.TWILIO_FROM, body=text)
        except TwilioRestException as exc:
            if exc.code in PERMANENT_CODES:
                raise PermanentDeliveryError(f"twilio {exc.status} code {exc.code}") from exc
            raise RuntimeError(f"twilio {exc.status} code {exc.code}") from exc
        return message.sid
