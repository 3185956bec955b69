from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from delivery.channels.base import DeliveryChannel
from inventory.selectors import keys_for_order


class EmailChannel(DeliveryChannel):
    """The keys in the body of a text + HTML email (no attachment)."""

    def send(self, *, delivery) -> str:
        order = delivery.order
        context = {
            "order": order,
            "keys": list(keys_for_order(order_id=order.pk)),
            "shop_name": settings.SHOP_NAME,
        }
        domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].rstrip(">") or "kamidrop.local"
        # One id per delivery: a resend after a crash can be recognised as the
        # same message by the receiving side.
        message_id = f"<delivery-{delivery.pk}.{order.order_no}@{domain}>"
        message = EmailMultiAlternatives(
            subject=render_to_string("delivery/email_keys_subject.txt", context).strip(),
            body=render_to_string("delivery/email_keys.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[delivery.recipient],
            headers={"Message-ID": message_id},
        )
        message.attach_alternative(render_to_string("delivery/email_keys.html", context), "text/html")
        message.send(fail_silently=False)
        return message_id
