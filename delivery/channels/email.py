import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from delivery.channels.base import DeliveryChannel, PermanentDeliveryError
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
        # One id per send of a delivery (the email's idempotency key): a resend
        # after a crash is recognised as the same message by the receiving
        # side; a deliberate resend is a new message.
        resend = f".r{delivery.resends}" if delivery.resends else ""
        message_id = f"<delivery-{delivery.pk}{resend}.{order.order_no}@{domain}>"
        message = EmailMultiAlternatives(
            subject=render_to_string("delivery/email_keys_subject.txt", context).strip(),
            body=render_to_string("delivery/email_keys.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[delivery.recipient],
            headers={"Message-ID": message_id},
        )
        message.attach_alternative(render_to_string("delivery/email_keys.html", context), "text/html")
        try:
            message.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentDeliveryError(f"recipient refused: {_replies(exc.recipients)}") from exc
        except smtplib.SMTPDataError as exc:
            # 5xx to the message: permanent (RFC 5321); 4xx: try again later. A
            # refused sender or login is the shop's own setup: retried, alerted.
            if 500 <= exc.smtp_code < 600:
                raise PermanentDeliveryError(f"refused with {exc.smtp_code}: {_text(exc.smtp_error)}") from exc
            raise
        return message_id


def _text(reply) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply))[:300]


def _replies(recipients: dict) -> str:
    return "; ".join(f"{code} {_text(reply)}" for code, reply in recipients.values())
