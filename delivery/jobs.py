"""RQ jobs of the delivery queue. Jobs take ids and are idempotent.

Jobs are an interface: they call the shop's order services, which own the
order's state machine and call the delivery services.
"""

from shop.services import order_delivery_failed, order_delivery_send


def delivery_send_job(delivery_id: int) -> str:
    return order_delivery_send(delivery_id=delivery_id)


def delivery_send_failed(job, connection, exc_type, exc_value, traceback) -> None:
    # rq calls this after every failed attempt; the service decides from the
    # delivery's own attempt counter whether this one was the last.
    order_delivery_failed(delivery_id=job.args[0])
