"""Payment provider plug-ins, loaded by dotted path from ``PAYMENT_PROVIDERS``
(the ``EMAIL_BACKEND`` pattern) and bound to a payment method's configuration
(``payments.methods``): adding one touches no other app."""

from payments.providers.base import PaymentProvider


class ProviderUnknown(Exception):
    """No enabled payment method has this id."""

    code = "PROVIDER_UNKNOWN"


def provider_get(method_id: str) -> PaymentProvider:
    """The plug-in of the enabled payment method ``method_id``, bound to its merchant."""
    from payments.methods import method_provider  # the registry reads settings and the database

    return method_provider(method_id)
