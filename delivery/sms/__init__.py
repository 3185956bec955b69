"""SMS gateways behind one interface, chosen by dotted path in ``SMS_BACKEND``.

A backend's ``send(*, to, text, idempotency_key) -> str`` returns the
gateway's message id, raises ``PermanentDeliveryError`` when the gateway will
never take the message (a bad number), and anything else to be retried.
"""

from django.conf import settings
from django.utils.module_loading import import_string


def sms_backend_get():
    return import_string(settings.SMS_BACKEND)()
