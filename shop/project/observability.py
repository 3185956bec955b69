"""Structured logs: a request id on every line, JSON output, secrets redacted.

- ``RequestIdMiddleware`` gives each request an id (the caller's
  ``X-Request-ID`` when it is a short safe token, else a new one), returns it
  in the response header and logs one access line per request;
- ``JsonFormatter`` writes one JSON object per line: time, level, logger,
  message, request_id and order_no when known;
- ``RedactFilter`` (on the handler, so it sees every propagated record)
  replaces whatever looks like key material, tokens or passwords.

Redaction is the safety net, not the rule: code never logs keys or tokens.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from shop.project.accesslog import path_redact

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
order_no_var: contextvars.ContextVar[str] = contextvars.ContextVar("order_no", default="")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
REDACTED = "[redacted]"

_REDACTIONS = [
    # name=value / name: value pairs whose name says secret
    re.compile(
        r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|sign|signature|authorization|cookie|sessionid)"
        r"[\"']?\s*[=:]\s*[\"']?)([^\s\"'&,;}]+)"
    ),
    re.compile(r"(?i)(bearer\s+)(\S+)"),
    # URLs with credentials: scheme://user:password@host
    re.compile(r"(://[^/\s:@]+:)([^@\s/]+)(@)"),
]
# Card-key shapes: three or more dash-separated groups (XXXX-XXXX-XXXX), and
# long runs of letters and digits mixed (tokens, licence keys without dashes).
_KEY_SHAPES = [
    re.compile(r"\b[A-Za-z0-9]{3,}(?:-[A-Za-z0-9]{3,}){2,}\b"),
    re.compile(r"\b(?=[A-Za-z0-9_-]*[A-Za-z])(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}\b"),
]


def log_redact(text: str) -> str:
    """``text`` with anything that looks like a secret replaced by ``[redacted]``."""
    for pattern in _REDACTIONS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED + (m.group(3) if m.lastindex >= 3 else ""), text)
    for pattern in _KEY_SHAPES:
        text = pattern.sub(REDACTED, text)
    return text


class RedactFilter(logging.Filter):
    """Freezes the message (msg % args) and redacts it, and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a broken format string still gets logged
            message = str(record.msg)
        record.msg, record.args = log_redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = log_redact(record.exc_text)
        return True


class ContextFilter(logging.Filter):
    """Puts the request id and order number of the current context on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id_var.get()
        if not getattr(record, "order_no", ""):
            record.order_no = order_no_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "") or request_id_var.get()
        order_no = getattr(record, "order_no", "") or order_no_var.get()
        if request_id:
            entry["request_id"] = request_id
        if order_no:
            entry["order_no"] = str(order_no)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def request_id_accept(value: str | None) -> str:
    """The caller's request id if it is a short safe token, else a new one."""
    if value and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


access_logger = logging.getLogger("shop.request")


class RequestIdMiddleware:
    """Outermost middleware: every log line of a request carries its id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_accept(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        id_token = request_id_var.set(request_id)
        order_token = order_no_var.set("")
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            access_logger.info(
                "%s %s %s %dms", request.method, path_redact(request.path), response.status_code,
                (time.monotonic() - started) * 1000,
            )
            return response
        finally:
            order_no_var.reset(order_token)
            request_id_var.reset(id_token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        order_no = view_kwargs.get("order_no")
        if order_no:
            order_no_var.set(str(order_no)[:20])
