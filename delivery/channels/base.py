import time


class PermanentDeliveryError(Exception):
    """The channel will never accept this delivery (e.g. a rejected address): do not retry.

    The message names the transport's reason (an SMTP reply, an HTTP status),
    never the message body.
    """

    code = "DELIVERY_REJECTED"


class SendBudgetSpent(Exception):
    """The batch ran out of time before this delivery's turn: it was not sent
    and is retried like any transient failure."""

    code = "SEND_BUDGET_SPENT"


class DeliveryChannel:
    """Sends an order's keys through one medium.

    ``send`` runs outside any transaction and row lock, may raise to ask for a
    retry (``PermanentDeliveryError`` when a retry cannot help), and returns
    the provider's message id (or ""). Providers that accept an idempotency
    key get ``delivery.idempotency_key``. ``keys`` are the order's keys when
    the caller has already read them (``inventory.selectors.keys_for_orders``).
    """

    def send(self, *, delivery, keys: list | None = None) -> str:
        raise NotImplementedError

    def send_many(self, *, deliveries: list, keys_by_order: dict[int, list], deadline: float,
                  accepted=None) -> list[str | Exception]:
        """Send a batch; one result per delivery, in order: the message id, or
        the exception that stopped it (one failure never stops the others).
        Past ``deadline`` (``time.monotonic()``) nothing more is started.
        ``accepted(delivery, message_id)`` is called as each one is accepted,
        before the next is tried (the send receipts: a batch cut short by a
        kill has its accepted sends noted). Channels that can share a
        connection across the batch override this."""
        results: list[str | Exception] = []
        for delivery in deliveries:
            if time.monotonic() > deadline:
                results.append(SendBudgetSpent("not attempted: the batch's sending time ran out"))
                continue
            try:
                results.append(self.send(delivery=delivery, keys=keys_by_order.get(delivery.order_id, [])))
            except Exception as exc:  # noqa: BLE001 - recorded per delivery by the caller
                results.append(exc)
            else:
                if accepted is not None:
                    accepted(delivery, results[-1])
        return results
