import smtplib
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.console import EmailBackend as ConsoleEmailBackend
from django.template.loader import get_template

from delivery.channels.base import DeliveryChannel, PermanentDeliveryError, SendBudgetSpent
from delivery.channels.email_message import KeyEmail
from delivery.channels.email_templates import templates_render
from inventory.sealing import secret_mask
from inventory.selectors import keys_for_order

TEMPLATES = {
    "subject": "delivery/email_keys_subject.txt",
    "text": "delivery/email_keys.txt",
    "html": "delivery/email_keys.html",
}

# The worker process's mail connection, kept open between batches (opening
# one costs more than sending a message): (settings it was opened with, backend).
# A sender takes it for the length of a batch; a second sender meanwhile opens its own.
_pooled: tuple[tuple, object] | None = None
_pool_lock = threading.Lock()


class EmailChannel(DeliveryChannel):
    """The keys in the body of a text + HTML email (no attachment).

    A batch goes over one connection, which the worker process keeps for the
    next batch. A message that meets an error is reported as failed (never
    assumed sent) and the connection is replaced before the next one, so a
    broken connection costs one message a retry, not the batch. The
    templates are rendered once per language and number of keys and filled
    in per message (``email_templates``); the MIME message is written
    straight to bytes (``email_message``).
    """

    def send(self, *, delivery, keys: list | None = None) -> str:
        if keys is None:
            keys = list(keys_for_order(order_id=delivery.order_id))
        [result] = self.send_many(deliveries=[delivery], keys_by_order={delivery.order_id: keys},
                                  deadline=float("inf"))
        if isinstance(result, Exception):
            raise result
        return result

    def send_many(self, *, deliveries: list, keys_by_order: dict[int, list], deadline: float,
                  accepted=None) -> list[str | Exception]:
        templates = {name: get_template(path) for name, path in TEMPLATES.items()}
        domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].rstrip(">") or "kamidrop.local"
        backend = _connection_take()
        # The console backend (and the file one, its subclass) is a development
        # tool that writes the message where a terminal or a log file keeps it:
        # keys go there masked, like everywhere keys are listed.
        masked = isinstance(backend, ConsoleEmailBackend)
        results: list[str | Exception] = []
        broken: Exception | None = None  # the connection cannot be (re)opened: the rest would wait for it too
        try:
            for delivery in deliveries:
                if broken is not None:
                    results.append(broken)
                    continue
                if time.monotonic() > deadline:
                    results.append(SendBudgetSpent("not attempted: the batch's sending time ran out"))
                    continue
                message_id = _message_id(delivery, domain)
                try:
                    message = _message_build(delivery, keys_by_order.get(delivery.order_id, []), message_id, templates,
                                             masked=masked)
                except Exception as exc:  # noqa: BLE001 - this message only
                    results.append(exc)
                    continue
                try:
                    backend.open()
                except Exception as exc:  # noqa: BLE001
                    _connection_discard(backend)
                    broken = exc
                    results.append(exc)
                    continue
                try:
                    backend.send_messages([message])
                except smtplib.SMTPRecipientsRefused as exc:
                    results.append(_permanent(f"recipient refused: {_replies(exc.recipients)}", exc))
                except smtplib.SMTPDataError as exc:
                    # 5xx to the message: permanent (RFC 5321); 4xx: try again later.
                    # The server answered: the connection is still good.
                    if 500 <= exc.smtp_code < 600:
                        results.append(_permanent(f"refused with {exc.smtp_code}: {_text(exc.smtp_error)}", exc))
                    else:
                        results.append(exc)
                except Exception as exc:  # noqa: BLE001 - a refused sender or login (the shop's own setup: retried, alerted), or a broken connection
                    _connection_discard(backend)
                    results.append(exc)
                else:
                    results.append(message_id)
                    if accepted is not None:
                        accepted(delivery, message_id)
        except BaseException:
            # Interrupted mid-exchange (a job timeout): the connection's state is unknown.
            _connection_discard(backend)
            raise
        _connection_return(backend)
        return results


def _message_id(delivery, domain: str) -> str:
    # One id per send of a delivery (the email's idempotency key): a resend
    # after a crash is recognised as the same message by the receiving side;
    # a deliberate resend is a new message.
    resend = f".r{delivery.resends}" if delivery.resends else ""
    return f"<delivery-{delivery.pk}{resend}.{delivery.order.order_no}@{domain}>"


@dataclass(frozen=True)
class _MaskedKey:
    """What the templates read of a key, its secret masked."""

    product: object
    secret: str


def _message_build(delivery, keys: list, message_id: str, templates: dict, *, masked: bool = False) -> KeyEmail:
    if masked:
        keys = [_MaskedKey(product=key.product, secret=secret_mask(key.secret)) for key in keys]
    rendered = templates_render(templates, order=delivery.order, keys=keys, shop_name=settings.SHOP_NAME)
    message = KeyEmail(
        subject=rendered["subject"].strip(),
        body=rendered["text"],
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.recipient],
        headers={"Message-ID": message_id},
    )
    message.attach_alternative(rendered["html"], "text/html")
    return message


def _settings_key() -> tuple:
    return (settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_HOST_USER,
            settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL)


def _connection_take():
    """The process's pooled mail backend if it was opened with the current
    settings and still answers, else a new one (opened on first use)."""
    global _pooled
    with _pool_lock:
        pooled, _pooled = _pooled, None
    if pooled is not None:
        key, backend = pooled
        if key == _settings_key() and _connection_alive(backend):
            return backend
        _connection_discard(backend)
    return get_connection(fail_silently=False)


def _connection_alive(backend) -> bool:
    # A server drops idle connections: ask before trusting a pooled one, so
    # the first message of a batch does not pay for it with a retry.
    connection = getattr(backend, "connection", None)
    if not isinstance(connection, smtplib.SMTP):
        return True
    try:
        return connection.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _connection_return(backend) -> None:
    global _pooled
    with _pool_lock:
        spare, _pooled = (None, (_settings_key(), backend)) if _pooled is None else (backend, _pooled)
    if spare is not None:
        _connection_discard(spare)


def _connection_discard(backend) -> None:
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - closing a broken connection; forget it either way
        if hasattr(backend, "connection"):
            backend.connection = None


def _permanent(reason: str, cause: Exception) -> PermanentDeliveryError:
    error = PermanentDeliveryError(reason)
    error.__cause__ = cause
    return error


def _text(reply) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply))[:300]


def _replies(recipients: dict) -> str:
    return "; ".join(f"{code} {_text(reply)}" for code, reply in recipients.values())
