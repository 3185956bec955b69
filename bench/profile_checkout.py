"""Where one API checkout's web CPU goes, in-process (issue 22, point 3).

    .venv/bin/python bench/profile_checkout.py [--checkouts 300] [--top 40] [--sort cumulative|tottime]

A fresh stack's database and Redis (bench/stack.py, production settings:
DEBUG off, DB_CONN_MAX_AGE 60, the sandbox off), one product with enough
sealed keys, and distinct buyers (own address through TRUSTED_PROXIES, own
email and device) posting ``POST /api/v1/orders`` through Django's test
client: every middleware and the view, no gunicorn. First the unprofiled CPU
of this process per checkout (PostgreSQL and Redis are other processes: not
counted), then cProfile over the same number of checkouts, its top functions,
and the statements of one checkout. Every checkout must succeed (exit 1
otherwise). Nothing is written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import BASE_DIR, PY, Stack  # noqa: E402  (bench/ on the path first)


def inner(args) -> None:
    import secrets

    import django

    sys.path.insert(0, str(BASE_DIR))
    django.setup()
    from django.db import connection
    from django.test import Client

    from inventory.services import keys_import
    from shop.models import Product

    total = 2 * args.checkouts + 20
    product = Product.objects.create(slug="hot", name="Hot card", price="10.00", max_per_order=1)
    salt = secrets.token_hex(4).upper()
    keys_import(product=product, source="bench profile",
                entries=((i + 1, f"HOT-{i:08d}-{salt}") for i in range(total)))
    client = Client(HTTP_HOST="127.0.0.1")
    counter = iter(range(total))

    def checkout() -> None:
        i = next(counter)
        body = {"product": "hot", "quantity": 1, "email": f"buyer{i}@example.com", "provider": "epay",
                "device_id": f"profdev{i:09d}"}
        response = client.post("/api/v1/orders", json.dumps(body), content_type="application/json",
                               HTTP_X_FORWARDED_FOR=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                               HTTP_ACCEPT="application/json")
        if response.status_code != 201:
            raise SystemExit(f"checkout {i}: HTTP {response.status_code} {response.content[:300]!r}")

    for _ in range(10):  # warm: connections, caches, imports
        checkout()
    statements = []  # (request_started empties connection.queries: a wrapper sees them all)

    def note(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        checkout()
    started = time.process_time()
    for _ in range(args.checkouts):
        checkout()
    cpu_ms = (time.process_time() - started) * 1000 / args.checkouts
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on PostgreSQL
    wall = time.perf_counter()
    profiler.enable()
    for _ in range(args.checkouts):
        checkout()
    profiler.disable()
    wall_ms = (time.perf_counter() - wall) * 1000 / args.checkouts
    print(f"unprofiled CPU per checkout (this process): {cpu_ms:.2f} ms; profiled wall {wall_ms:.2f} ms")
    print(f"statements in one checkout: {len(statements)}")
    for sql in statements:
        print(f"  {sql[:220]}")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    if args.callers:
        stats.print_callers(args.callers)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkouts", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--callers", default="", help="also who calls the functions matching this")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args)
        return
    # WARNING: no request log line per checkout on the terminal (gunicorn's
    # access log is not in this process either way).
    stack = Stack(extra_env={"TRUSTED_PROXIES": "127.0.0.1", "LOG_LEVEL": "WARNING"}, name="profile")
    import subprocess

    stack.manage("migrate", "--noinput", "-v", "0")
    result = subprocess.run([PY, "bench/profile_checkout.py", "--inner", "--checkouts", str(args.checkouts),
                             "--top", str(args.top), "--sort", args.sort,
                             "--callers", args.callers], cwd=BASE_DIR, env=stack.env)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
