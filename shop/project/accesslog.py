"""Access logs that never record a secret.

Order links carry the buyer's token (``?t=``) or a signed link (``?s=``),
the lookup and sign-in links their one-time token in the path
(``/lookup/link/<token>``, ``/lookup/signin/<token>``), the back-in-stock
unsubscribe link its token (``/alerts/unsubscribe/<token>``),
and an EPay notify by GET its sign: anyone who reads the log could open the
order. Both access logs (gunicorn's, through ``RedactingLogger``, and the
shop's own ``shop.request`` line) write the path and query with those parts
replaced by ``[redacted]``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
SECRET_PARAMETERS = frozenset({"t", "s", "token", "sign", "key", "signature", "password", "code"})
SECRET_PATHS = [
    re.compile(r"^(/lookup/link/)[^/?]+"),
    re.compile(r"^(/lookup/signin/)[^/?]+"),  # "all my orders" sign-in link
    re.compile(r"^(/alerts/unsubscribe/)[^/?]+"),  # back-in-stock unsubscribe link
]


def path_redact(path: str) -> str:
    for pattern in SECRET_PATHS:
        path = pattern.sub(rf"\g<1>{REDACTED}", path)
    return path


def query_redact(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs], safe="[]")


def url_redact(url: str) -> str:
    """A path with its query (a request target) or a whole URL (a Referer)."""
    if not url or url == "-":
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path_redact(parts.path), query_redact(parts.query),
                       parts.fragment and REDACTED))


class RedactingLogger(Logger):
    """gunicorn's logger (``--logger-class shop.project.accesslog.RedactingLogger``)
    with the request line, path, query and Referer redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = path_redact(environ.get("PATH_INFO", ""))
        query = query_redact(environ.get("QUERY_STRING", ""))
        target = f"{path}?{query}" if query else path
        atoms.update({
            "r": f"{environ.get('REQUEST_METHOD', '-')} {target} {environ.get('SERVER_PROTOCOL', '-')}",
            "U": path, "q": query, "f": url_redact(atoms.get("f", "-")),
        })
        # The same values as a format may also name them: %({raw_uri}e)s,
        # %({query_string}e)s, %({referer}i)s ...
        for name in ("{raw_uri}e", "{request_uri}e"):
            if name in atoms:
                atoms[name] = target
        for name, value in {"{path_info}e": path, "{query_string}e": query}.items():
            if name in atoms:
                atoms[name] = value
        for name in ("{http_referer}e", "{referer}i"):
            if isinstance(atoms.get(name), str):
                atoms[name] = url_redact(atoms[name])
        return atoms
