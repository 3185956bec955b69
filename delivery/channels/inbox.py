from delivery.channels.base import DeliveryChannel


class InboxChannel(DeliveryChannel):
    """The order page itself: written SENT in the paid transaction, nothing to send."""

    def send(self, *, delivery, keys: list | None = None) -> str:
        return ""
