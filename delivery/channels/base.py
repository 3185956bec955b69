class PermanentDeliveryError(Exception):
    """The channel will never accept this delivery (e.g. a rejected address): do not retry.

    The message names the transport's reason (an SMTP reply, an HTTP status),
    never the message body.
    """

    code = "DELIVERY_REJECTED"


class DeliveryChannel:
    """Sends an order's keys through one medium.

    ``send`` runs outside any transaction and row lock, may raise to ask for a
    retry (``PermanentDeliveryError`` when a retry cannot help), and returns
    the provider's message id (or ""). Providers that accept an idempotency
    key get ``delivery.idempotency_key``.
    """

    def send(self, *, delivery) -> str:
        raise NotImplementedError
