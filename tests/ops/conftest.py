"""Fixtures of the operations tests: orders paid (and delivered) through the sandbox notify."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fakes.base import SERVE_POLL


@pytest.fixture
def delivered_order(pay, make_product, make_unpaid_order, run_worker, django_capture_on_commit_callbacks):
    order = pay(make_unpaid_order(product=make_product(keys=3, slug="gift"), quantity=2, email="buyer@example.com"))
    with django_capture_on_commit_callbacks(execute=True):
        run_worker()  # the email; its commit enqueues the order.delivered webhook
    run_worker()
    order.refresh_from_db()
    return order


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        server.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = server.answers.pop(0) if server.answers else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def http_receiver():
    """A real HTTP server on loopback recording every POST (``.received``);
    ``.answers`` is a list of status codes to answer with, in order (then 200)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received, server.answers = [], []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs=SERVE_POLL, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
