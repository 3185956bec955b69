"""Middleware for people's browsers, stepped around for server-to-server callbacks.

Sessions, the buyer's language, the logged-in user and flash messages serve
pages people look at. A payment provider's notify (``SERVER_TO_SERVER_PATHS``)
uses none of them, and on a flash-sale night it is most of the traffic: these
subclasses of Django's middleware pass such a request straight on. Lazy as
they are, the four cost about 0.08 ms of CPU a request, some 30 % of Django's
own share of a notify (bench/RESULTS.md, "notify endpoint").

Everything that protects or traces a request still runs on every path:
request ids and the access line, the security headers, X-Frame-Options,
host validation (CommonMiddleware) and CSRF (the notify view is exempt by
its own decorator, not by its path).
"""

from __future__ import annotations

import functools
import re

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.middleware import locale as locale_middleware
from django.utils import translation


@functools.cache
def _paths_pattern(paths: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{path})" for path in paths))


def request_is_server_to_server(request) -> bool:
    """Whether the request's path is a server-to-server callback's."""
    return _paths_pattern(tuple(settings.SERVER_TO_SERVER_PATHS)).fullmatch(request.path_info) is not None


class BrowserOnly:
    """Mixin: the middleware runs for every request but server-to-server ones.

    Only ``__call__`` is stepped around, so the middleware must do all its
    work there (process_request / process_response): a ``process_view`` or
    ``process_exception`` hook would still be called by Django's handler.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        hooks = [hook for hook in ("process_view", "process_exception", "process_template_response")
                 if hasattr(cls, hook)]
        if hooks:
            raise TypeError(f"{cls.__name__} has {', '.join(hooks)}, which BrowserOnly cannot skip")

    def __call__(self, request):
        if request_is_server_to_server(request):
            return self.server_to_server(request)
        return super().__call__(request)

    def server_to_server(self, request):
        return self.get_response(request)


class SessionMiddleware(BrowserOnly, sessions_middleware.SessionMiddleware):
    pass


class LocaleMiddleware(BrowserOnly, locale_middleware.LocaleMiddleware):
    def server_to_server(self, request):
        # What Django picks for a caller with no cookie and no Accept-Language,
        # rather than whatever a browser's request left active in this thread.
        translation.activate(settings.LANGUAGE_CODE)
        return self.get_response(request)


class AuthenticationMiddleware(BrowserOnly, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(BrowserOnly, messages_middleware.MessageMiddleware):
    pass
