"""Load process: POSTs pre-built request bodies to one URL with N threads over
keep-alive connections and writes each request's latency and reply.

    python bench/load.py --url http://127.0.0.1:8100/payments/epay/notify --bodies bodies.txt \
        --concurrency 32 [--rate 100] --out results.json

``--rate`` paces the whole load to that many requests per second (default:
as fast as the server answers).
"""

import argparse
import http.client
import json
import queue
import threading
import time
from urllib.parse import urlsplit


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    url = urlsplit(args.url)
    bodies = open(args.bodies).read().splitlines()
    work: queue.Queue = queue.Queue()
    for i, body in enumerate(bodies):
        work.put((i, body))
    results = [None] * len(bodies)
    started = time.perf_counter()

    def run():
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Connection": "keep-alive"}
        while True:
            try:
                i, body = work.get_nowait()
            except queue.Empty:
                break
            if args.rate:
                due = started + i / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.perf_counter()
            try:
                conn.request("POST", url.path, body=body, headers=headers)
                response = conn.getresponse()
                reply = response.read().decode(errors="replace")[:40]
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
                reply, status = f"error {type(exc).__name__}", 0
            results[i] = {"sent_at": time.time(), "latency_ms": (time.perf_counter() - t0) * 1000,
                          "status": status, "reply": reply}
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    json.dump({"elapsed_s": elapsed, "results": results}, open(args.out, "w"))


if __name__ == "__main__":
    main()
