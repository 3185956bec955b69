"""The key email's MIME message, written straight to bytes.

Django builds a message as a tree of ``email.mime`` objects and serialises it
through ``email.generator``, which folds every header of every part through
``email.header.Header`` and compiles a regular expression per message to
check its boundary: more CPU than rendering the message's three templates.
The key email is always the same shape (a text body, one HTML alternative,
UTF-8, no attachment), so ``KeyEmail.message()`` writes that shape directly:

- the headers Django writes, in its order, with its values (``forbid_multi_line_headers``
  encodes non-ASCII ones exactly as Django does) and folded as ``email.generator``
  folds them; a header line that is short plain ASCII needs no folding and is
  written as it is, constant ones are folded once per process;
- each part with its Content-Type and Content-Transfer-Encoding (7bit or 8bit
  as Django chooses) but without the ``MIME-Version`` Django repeats in every
  part (RFC 2045 asks for it once, at the top): a smaller message.

What the buyer reads is the same: subject, sender, recipient, date,
Message-ID, both bodies byte for byte (tests/delivery/test_email_message.py
compares with Django's message). A body with a line over 998 bytes needs
quoted-printable, and any other shape (attachments, Cc, another alternative)
goes through Django's ``message()`` unchanged.
"""

from __future__ import annotations

import functools
import re
import secrets
from email import policy as email_policy
from email.message import Message
from email.utils import formatdate, make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import DNS_NAME, RFC5322_EMAIL_LINE_LENGTH_LIMIT, forbid_multi_line_headers

_NEWLINES = re.compile(r"\r\n|\r|\n")  # as email.generator splits lines
_FOLD_AT = 78  # email.generator's line length for headers (RFC 5322's recommendation)
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*")  # printable ASCII words, single spaces


@functools.lru_cache(maxsize=256)
def _folded(name: str, value: str, linesep: str) -> bytes:
    return email_policy.compat32.clone(linesep=linesep).fold_binary(name, value)


def _header_line(name: str, value: str, linesep: str, *, constant: bool = False) -> bytes:
    """``name: value`` as email.generator writes it (compat32, 78 columns)."""
    if len(name) + 2 + len(value) <= _FOLD_AT and _PLAIN.fullmatch(value) and "=?" not in value:
        return f"{name}: {value}{linesep}".encode("ascii")
    if constant:
        return _folded(name, value, linesep)
    return email_policy.compat32.clone(linesep=linesep).fold_binary(name, value)


def _lines(text: str, linesep: str) -> str:
    """``text`` with its line ends made ``linesep``, as email.generator writes a payload."""
    lines = _NEWLINES.split(text)
    return linesep.join(lines[:-1]) + (linesep if len(lines) > 1 else "") + lines[-1]


class KeyEmailMessage(Message):
    """A multipart/alternative message (text, HTML) serialised without
    email.generator. Its headers and parts can be read like any ``Message``;
    ``as_bytes``/``as_string`` write the bytes the SMTP backend sends."""

    def __init__(self, *, headers: list[tuple[str, str]], text: str, html: str):
        super().__init__()
        self.boundary = "=_" + secrets.token_hex(12)
        while self.boundary in text or self.boundary in html:  # never, at 96 random bits; still checked
            self.boundary = "=_" + secrets.token_hex(12)
        self["Content-Type"] = f'multipart/alternative; boundary="{self.boundary}"'
        self["MIME-Version"] = "1.0"
        for name, value in headers:
            self[name] = value
        self._bodies = []
        for subtype, body in (("plain", text), ("html", html)):
            part = Message()
            part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
            part["Content-Transfer-Encoding"] = "7bit" if body.isascii() else "8bit"
            part._payload = body.encode("utf-8").decode("ascii", "surrogateescape")  # as set_payload stores it
            self.attach(part)
            self._bodies.append(body)

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        out = [_header_line(name, value, linesep, constant=name == "MIME-Version" or name == "From")
               for name, value in self._headers]
        out.append(linesep.encode())
        for index, (part, body) in enumerate(zip(self._payload, self._bodies, strict=True)):
            out.append(f"{linesep if index else ''}--{self.boundary}{linesep}".encode())
            out += [_header_line(name, value, linesep, constant=True) for name, value in part._headers]
            out.append(linesep.encode())
            out.append(_lines(body, linesep).encode("utf-8"))
        out.append(f"{linesep}--{self.boundary}--{linesep}".encode())
        return b"".join(out)

    def as_string(self, unixfrom: bool = False, maxheaderlen: int = 0, policy=None) -> str:
        return self.as_bytes().decode("utf-8", "surrogateescape")


class KeyEmail(EmailMultiAlternatives):
    """The key email (a text body and its HTML alternative), whose
    ``message()`` is a ``KeyEmailMessage`` when it has that shape."""

    def message(self):
        [*_, last] = self.alternatives or [None]
        plain_shape = (
            len(self.alternatives) == 1 and last.mimetype == "text/html" and not self.attachments
            and not self.cc and not self.reply_to and self.content_subtype == "plain"
            and (self.encoding or settings.DEFAULT_CHARSET).lower() == "utf-8"
            and not any(len(line.encode(errors="surrogateescape")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
                        for body in (self.body, last.content) for line in body.splitlines())
        )
        if not plain_shape:
            return super().message()
        # The headers of EmailMessage.message(), in its order.
        headers = [("Subject", self.subject), ("From", self.extra_headers.get("From", self.from_email))]
        to = self.extra_headers.get("To") or ", ".join(str(v) for v in self.to)
        if to:
            headers.append(("To", to))
        names = {name.lower() for name in self.extra_headers}
        if "date" not in names:
            headers.append(("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME)))
        if "message-id" not in names:
            headers.append(("Message-ID", make_msgid(domain=DNS_NAME)))
        headers += [(name, value) for name, value in self.extra_headers.items()
                    if name.lower() not in {"from", "to", "cc", "reply-to"}]
        return KeyEmailMessage(headers=[forbid_multi_line_headers(name, value, "utf-8") for name, value in headers],
                               text=self.body, html=last.content)
