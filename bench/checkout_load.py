"""Load process for bench/checkout.py: N distinct buyers check out one product
over C keep-alive connections, through the API, the product page's form, or
both (alternating), and each buyer's outcome and latency is written out.

    python bench/checkout_load.py --base http://127.0.0.1:8100 --slug hot --via api|web|both \
        --checkouts 1000 --concurrency 64 --run 0 --out results.json

Every buyer has an address of its own (``X-Forwarded-For``; the stack trusts
127.0.0.1 as its proxy), an email of its own and a first-party device id of
its own (the ``kd_dev`` cookie the shop's script sets, and the form's or the
body's ``device_id``). A web buyer loads the product page first (a new
browser: its CSRF cookie and token come from that page), then posts the form;
success is a 302 to the payment (EPay's gateway, carrying the order number).
An API buyer posts JSON to /api/v1/orders; success is a 201.

Each connection first sends one untimed GET of the product page (warm-up);
the timed phase starts when every connection has had its answer. One asyncio
loop on raw streams, as bench/load.py: the load shares the two cores with the
stack it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
ERROR_CODE = re.compile(rb'role="alert" data-code="([A-Z_]+)"')
REQUEST_TIMEOUT = 120


class StaleConnection(Exception):
    """The server closed a kept-alive connection before answering anything."""


def buyer(run: int, i: int) -> dict:
    """Buyer ``i`` of run ``run``: its own address, email and device id."""
    ip = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.1")) + run * 1_000_003 + i)
    return {"ip": str(ip), "email": f"buyer{run}x{i}@example.com", "device": f"benchdev{run:03d}x{i:09d}"}


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.used = False
        self.retries = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        self.used = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(self, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
        """One request; a kept-alive connection the server closed while idle is
        reopened and the request sent again (nothing of it was read)."""
        for attempt in (0, 1):
            if self.writer is None:
                await self.open()
            try:
                return await asyncio.wait_for(self._exchange(method, path, headers, body), REQUEST_TIMEOUT)
            except StaleConnection:
                self.close()
                if attempt:
                    raise
                self.retries += 1
        raise AssertionError("unreachable")

    async def _exchange(self, method, path, headers, body) -> tuple[int, dict, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: keep-alive"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        reused = self.used
        self.used = True
        try:
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            status_line = await self.reader.readline()
        except (ConnectionResetError, BrokenPipeError):
            status_line = b""
        if not status_line:
            if reused:
                raise StaleConnection()
            raise ConnectionError("connection closed before an answer")
        status = int(status_line.split()[1])
        response_headers: dict[str, list[str]] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            response_headers.setdefault(name.strip().lower(), []).append(value.strip())
        if response_headers.get("transfer-encoding", [""])[0].lower() == "chunked":
            chunks = []
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                chunks.append((await self.reader.readexactly(size + 2))[:-2])
            await self.reader.readline()  # the blank line after the last chunk
            payload = b"".join(chunks)
        else:
            payload = await self.reader.readexactly(int(response_headers.get("content-length", ["0"])[0]))
        if response_headers.get("connection", [""])[0].lower() == "close":
            self.close()
        return status, response_headers, payload


def cookies_from(headers: dict) -> dict:
    jar = {}
    for header in headers.get("set-cookie", []):
        name, _, value = header.split(";", 1)[0].partition("=")
        jar[name.strip()] = value.strip()
    return jar


def order_no_from(location: str) -> str:
    """The order number in a successful checkout's redirect: EPay's gateway URL
    (``out_trade_no``), the shop's pay page (/pay/<reference>/) or its order page."""
    parts = urlsplit(location)
    trade = parse_qs(parts.query).get("out_trade_no")
    if trade:
        return trade[0]
    match = re.search(r"/(?:orders|pay)/([^/]+)/", parts.path)
    return match.group(1).split("-")[0] if match else ""


async def checkout_api(conn: Connection, args, who: dict) -> dict:
    body = json.dumps({"product": args.slug, "quantity": 1, "email": who["email"], "provider": args.method,
                       "device_id": who["device"]}).encode()
    t0 = time.perf_counter()
    status, _headers, payload = await conn.request("POST", "/api/v1/orders", {
        "Content-Type": "application/json", "Accept": "application/json", "X-Forwarded-For": who["ip"],
        "User-Agent": "kamidrop-bench/1 (api)"}, body)
    latency = (time.perf_counter() - t0) * 1000
    result = {"via": "api", "status": status, "latency_ms": latency, "page_ms": None}
    try:
        data = json.loads(payload)
    except ValueError:
        data = {}
    if status == 201:
        result.update(ok=True, order_no=data.get("order_no", ""))
    else:
        result.update(ok=False, code=(data.get("error") or {}).get("code", f"HTTP_{status}"))
    return result


async def checkout_web(conn: Connection, args, who: dict) -> dict:
    path = f"/p/{args.slug}/"
    browser = {"X-Forwarded-For": who["ip"], "User-Agent": "Mozilla/5.0 (kamidrop-bench/1 web)",
               "Accept": "text/html", "Accept-Language": "en"}
    t0 = time.perf_counter()
    status, headers, page = await conn.request("GET", path, {**browser, "Cookie": f"kd_dev={who['device']}"})
    page_ms = (time.perf_counter() - t0) * 1000
    token = CSRF_INPUT.search(page)
    jar = {"kd_dev": who["device"], **cookies_from(headers)}
    if status != 200 or token is None or "csrftoken" not in jar:
        return {"via": "web", "status": status, "latency_ms": page_ms, "page_ms": page_ms, "ok": False,
                "code": f"PAGE_HTTP_{status}" if status != 200 else "PAGE_NO_CSRF"}
    form = urlencode({"csrfmiddlewaretoken": token.group(1).decode(), "quantity": "1", "email": who["email"],
                      "phone": "", "query_password": "", "coupon": "", "terms": "on", "device_id": who["device"],
                      "method": args.method}).encode()
    t1 = time.perf_counter()
    status, headers, payload = await conn.request("POST", path, {
        **browser, "Content-Type": "application/x-www-form-urlencoded", "Origin": args.base,
        "Referer": args.base + path, "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}, form)
    latency = (time.perf_counter() - t1) * 1000
    result = {"via": "web", "status": status, "latency_ms": latency, "page_ms": page_ms}
    if status == 302:
        order_no = order_no_from(headers.get("location", [""])[0])
        result.update(ok=bool(order_no), order_no=order_no, **({} if order_no else {"code": "REDIRECT_ELSEWHERE"}))
    else:
        code = ERROR_CODE.search(payload)
        result.update(ok=False, code=code.group(1).decode() if code else f"HTTP_{status}")
    return result


async def run(args) -> dict:
    base = urlsplit(args.base)
    results: list = [None] * args.checkouts
    next_buyer = iter(range(args.checkouts))
    warmed = 0
    all_warm = asyncio.Event()
    clock = {}
    connections = [Connection(base.hostname, base.port) for _ in range(args.concurrency)]

    async def client(conn: Connection):
        nonlocal warmed
        try:  # warm-up, untimed: the connection, a worker thread, the page's code paths
            await conn.request("GET", f"/p/{args.slug}/", {"X-Forwarded-For": "192.0.2.1"})
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, StaleConnection):
            conn.close()  # the timed phase opens it again
        finally:
            warmed += 1
            if warmed == len(connections):
                clock["started"] = time.perf_counter()
                clock["started_at"] = time.time()
                all_warm.set()
        await all_warm.wait()
        for i in next_buyer:
            via = args.via if args.via != "both" else ("web", "api")[i % 2]
            started_at = time.perf_counter()
            try:
                result = await (checkout_web if via == "web" else checkout_api)(conn, args, buyer(args.run, i))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError,
                    StaleConnection) as exc:
                conn.close()
                result = {"via": via, "status": 0, "ok": False, "code": f"CONNECTION_{type(exc).__name__}",
                          "latency_ms": (time.perf_counter() - started_at) * 1000, "page_ms": None}
            result.update(buyer=i, done_at=time.perf_counter() - clock["started"])
            results[i] = result
        conn.close()

    await asyncio.gather(*(client(conn) for conn in connections))
    return {"elapsed_s": time.perf_counter() - clock["started"], "started_at": clock["started_at"],
            "reconnects": sum(conn.retries for conn in connections), "results": results}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the shop's base URL, e.g. http://127.0.0.1:8100")
    parser.add_argument("--slug", required=True)
    parser.add_argument("--via", choices=["api", "web", "both"], default="api")
    parser.add_argument("--method", default="epay", help="the payment method chosen at checkout")
    parser.add_argument("--checkouts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--run", type=int, default=0, help="run number: buyers differ from run to run")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    Path(args.out).write_text(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
