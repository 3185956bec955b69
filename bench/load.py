"""Load process: POSTs pre-built request bodies to one URL over N keep-alive
connections and writes each request's latency and reply.

    python bench/load.py --url http://127.0.0.1:8100/payments/epay/notify --bodies bodies.txt \
        --concurrency 32 [--rate 100] [--close] --out results.json

``--rate`` paces the whole load to that many requests per second (default:
as fast as the server answers); ``--close`` opens a new connection for every
request, as a payment gateway's notifies arrive. One asyncio loop on raw
streams: the load generator shares the machine's two cores with the stack it
measures, so it spends as little CPU per request as it can (tens of
microseconds, where threads and http.client spent several hundred).
"""

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def run(args) -> dict:
    url = urlsplit(args.url)
    bodies = open(args.bodies).read().splitlines()
    results: list = [None] * len(bodies)
    head = (f"POST {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Connection: {'close' if args.close else 'keep-alive'}\r\n")
    next_index = iter(range(len(bodies)))
    started = time.perf_counter()

    async def connect():
        return await asyncio.open_connection(url.hostname, url.port, limit=1 << 20)

    async def client():
        reader, writer = await connect()
        for i in next_index:
            if args.rate:
                delay = started + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            body = bodies[i].encode()
            t0 = time.perf_counter()
            try:
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status_line = await asyncio.wait_for(reader.readline(), 60)
                status = int(status_line.split()[1])
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                reply = (await reader.readexactly(length)).decode(errors="replace")[:40]
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
                reply, status, close = f"error {type(exc).__name__}", 0, True
            results[i] = {"sent_at": time.time(), "latency_ms": (time.perf_counter() - t0) * 1000,
                          "status": status, "reply": reply}
            if close or args.close:
                writer.close()
                reader, writer = await connect()
        writer.close()

    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    return {"elapsed_s": time.perf_counter() - started, "results": results}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--close", action="store_true", help="one connection per request (no keep-alive)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    json.dump(asyncio.run(run(args)), open(args.out, "w"))


if __name__ == "__main__":
    main()
