class PermanentDeliveryError(Exception):
    """The channel will never accept this delivery (e.g. a rejected address): do not retry."""


class DeliveryChannel:
    """Sends an order's keys through one medium.

    ``send`` runs outside any transaction and row lock, may raise to ask for a
    retry, and returns the provider's message id (or "").
    """

    def send(self, *, delivery) -> str:
        raise NotImplementedError
