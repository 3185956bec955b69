"""Payment providers, loaded by dotted path from ``PAYMENT_PROVIDERS`` (the
``EMAIL_BACKEND`` pattern): adding one touches no other app."""

from django.conf import settings
from django.utils.module_loading import import_string

from payments.providers.base import PaymentProvider


class ProviderUnknown(Exception):
    code = "PROVIDER_UNKNOWN"


def provider_get(provider_id: str) -> PaymentProvider:
    path = settings.PAYMENT_PROVIDERS.get(provider_id)
    if path is None:
        raise ProviderUnknown(provider_id)
    provider = import_string(path)()
    if not provider.enabled():
        raise ProviderUnknown(provider_id)
    return provider
