from django.conf import settings
from django.template.loader import render_to_string

from delivery.channels.base import DeliveryChannel
from delivery.sms import sms_backend_get
from inventory.selectors import keys_for_order


class SmsChannel(DeliveryChannel):
    """A short text with the key(s) and the order link, through ``SMS_BACKEND``."""

    def send(self, *, delivery, keys: list | None = None) -> str:
        order = delivery.order
        if keys is None:
            keys = list(keys_for_order(order_id=order.pk))
        context = {"order": order, "keys": keys, "shop_name": settings.SHOP_NAME}
        text = render_to_string("delivery/sms_keys.txt", context).strip()
        return sms_backend_get().send(to=delivery.recipient, text=text, idempotency_key=delivery.idempotency_key)
