"""The floor under every request: how many requests per second the image's
web stack answers on this machine when the view does almost nothing.

    .venv/bin/python bench/floor.py [--requests 6000] [--concurrency 64] [--runs 3] [--record]

A checkout or a payment notify can never be faster than this: the same
gunicorn (the image's workers, threads and access log), the same middleware
(sessions, CSRF, security headers, the request log, rate limiting where the
view asks for it), DB_CONN_MAX_AGE at the settings' default. The view is
``GET /api/v1/payment-methods``, which a buyer's checkout reads: answered from
the cache (Redis), no query (measured in process: ≈ 0.6 ms of CPU, against
≈ 2.3 ms for ``/healthz``, which opens a Redis connection of its own and
counts the queues). No RQ worker and no sweeper run, so the web has the whole
machine except the load generator.

Reported per run: requests answered per second, p50/p99 latency, CPU of the
web processes per request (PostgreSQL is not counted: the embedded server is
shared with whatever else runs, and this view sends it nothing). Issue 22 asks for 600 checkouts/s
at p99 ≤ 250 ms on two cores; this says how much of that budget is gone
before a checkout does anything of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import Stack, commit, machine, percentile, results_report

PATH = "/api/v1/payment-methods"


async def _load(port: int, *, requests: int, concurrency: int) -> tuple[list[float], int]:
    """GET PATH ``requests`` times over ``concurrency`` keep-alive connections."""
    latencies: list[float] = []
    errors = 0
    left = iter(range(requests))
    head = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n".encode()

    async def one_connection():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in left:
            started = time.perf_counter()
            writer.write(head)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status:
                errors += 1
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return latencies, errors


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_once(stack: Stack, *, requests: int, concurrency: int) -> dict:
    asyncio.run(_load(stack.web_port, requests=200, concurrency=concurrency))  # warm every worker
    web = [stack.processes["web"].pid]
    cpu_web = _cpu_seconds(web)
    started = time.perf_counter()
    latencies, errors = asyncio.run(_load(stack.web_port, requests=requests, concurrency=concurrency))
    elapsed = time.perf_counter() - started
    return {"rate": requests / elapsed, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "errors": errors,
            "web_ms": (_cpu_seconds(web) - cpu_web) / requests * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    results = []
    with Stack(rq_workers=0, sweeper=False, name="floor") as stack:
        for n in range(args.runs):
            results.append(run_once(stack, requests=args.requests, concurrency=args.concurrency))
            print(f"run {n + 1}: {results[-1]['rate']:.0f} requests/s", file=sys.stderr)
        settings = stack.settings_text()
    rates = [r["rate"] for r in results]
    lines = [
        f"## floor: the web stack answering a cached view — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python bench/floor.py --requests {args.requests} --concurrency {args.concurrency} "
        f"--runs {args.runs}`",
        f"- machine: {machine()}; commit {commit()}",
        f"- stack: {settings}; no RQ worker, no sweeper",
        f"- `GET {PATH}` ({args.requests} requests per run over {args.concurrency} keep-alive connections)",
        "",
        "| run | requests/s | p50 ms | p99 ms | web CPU ms/request | errors |",
        "|---|---|---|---|---|---|",
        *(f"| {n} | {r['rate']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['web_ms']:.2f} | {r['errors']} |"
          for n, r in enumerate(results, start=1)),
        "",
        f"Spread: {min(rates):.0f}–{max(rates):.0f} requests/s (median {statistics.median(rates):.0f}).",
        "",
    ]
    results_report(lines, record=args.record)
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
