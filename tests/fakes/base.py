"""A fake gateway's HTTP plumbing: a threaded server on 127.0.0.1, every
request recorded, a ``down`` switch (the connection is dropped: the shop sees
a network failure), and the server-to-server notify to the shop."""

from __future__ import annotations

import email.utils
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# serve_forever's keyword arguments for every test HTTP server: its loop looks
# for shutdown() every poll_interval (0.5 s by default, which every test
# tearing a server down would wait out).
SERVE_POLL = {"poll_interval": 0.05}


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes):
        url = urllib.parse.urlparse(handler.path)
        self.method = handler.command
        self.path = url.path
        self.query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body

    @property
    def form(self) -> dict:
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self):
        return json.loads(self.body or b"{}")


class Reply:
    def __init__(self, status: int = 200, body: bytes | str | dict = b"", headers: dict | None = None,
                 content_type: str = ""):
        if isinstance(body, dict):
            body, content_type = json.dumps(body, ensure_ascii=False).encode(), content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.status, self.body = status, body
        self.headers = {"Content-Type": content_type or "text/plain; charset=utf-8", **(headers or {})}


class FakeGateway:
    """Subclasses implement ``handle(request) -> Reply``."""

    def __init__(self):
        self.requests: list[Request] = []
        self.down = False
        self.clock_offset = 0  # seconds the gateway's clock (its Date header) is ahead of ours
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if gateway.down:
                    self.close_connection = True
                    self.connection.close()  # the shop sees the connection drop
                    return
                request = Request(self, body)
                gateway.requests.append(request)
                reply = gateway.handle(request)
                self.send_response_only(reply.status)  # no automatic Date: the gateway's clock may be off
                if "Date" not in reply.headers:
                    self.send_header("Date", email.utils.formatdate(time.time() + gateway.clock_offset, usegmt=True))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=SERVE_POLL, daemon=True)
        self.thread.start()

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def post(url: str, *, form: dict | None = None, body: bytes | None = None, headers: dict | None = None,
             method: str = "POST") -> tuple[int, str]:
        """The gateway's server-to-server notify: (status, body) of the shop's answer."""
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
