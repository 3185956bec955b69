"""Benchmark: import 1,000,000 keys, and claim latency at 10^3 vs 10^6 keys in stock.

    .venv/bin/python bench/import_keys.py [--keys 1000000] [--claims 300]

Runs on a database of its own (``kamidrop_bench``) on the embedded PostgreSQL
(or on BENCH_DATABASE_URL). The import goes through ``manage.py import_keys``
in a subprocess, exactly as an operator runs it; its wall time and peak memory
(max RSS) are measured. The claim is ``keys_reserve`` for one key, rolled back
each time so the stock stays the same. Results are appended to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def bench_database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    import psycopg

    from shop.project import embedded

    base = embedded.postgres_ensure()
    admin = base.replace(f"/{embedded.DATABASE_NAME}?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS kamidrop_bench")
        conn.execute("CREATE DATABASE kamidrop_bench")
    return base.replace(f"/{embedded.DATABASE_NAME}?", "/kamidrop_bench?")


def machine() -> str:
    mem_kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()}"


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=300)
    args = parser.parse_args()

    env = {**os.environ, "DATABASE_URL": bench_database_url(), "DJANGO_SETTINGS_MODULE": "shop.project.settings", "DEBUG": "1"}
    os.environ.update(env)
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True)

    import django

    django.setup()
    from django.db import transaction

    from inventory.services import key_entries, keys_import, keys_reserve
    from shop.models import Order, OrderLine, Product

    big = Product.objects.create(slug="bench-big", name="Bench big", price="1.00")
    small = Product.objects.create(slug="bench-small", name="Bench small", price="1.00")

    # --- import: the full size, and a tenth of it, to show memory stays flat ---
    def run_import(product, count: int) -> tuple[float, float, str, float]:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
            for _ in range(count):
                raw = "".join(secrets.choice(alphabet) for _ in range(16))
                fh.write(f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:]}\n")
            path = fh.name
        size_mb = os.path.getsize(path) / 1e6
        # manage.py in a wrapper that reports the process's own peak RSS
        wrapper = (
            "import resource, runpy, sys\n"
            f"sys.argv = ['manage.py', 'import_keys', '--product', {product.slug!r}, {path!r}]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        )
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", wrapper], cwd=BASE_DIR, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        os.unlink(path)
        if result.returncode != 0:
            sys.exit(f"import failed:\n{result.stderr}")
        peak_kb = int(result.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
        return seconds, peak_kb / 1024, result.stdout.strip().splitlines()[-1], size_mb

    tenth = Product.objects.create(slug="bench-tenth", name="Bench tenth", price="1.00")
    tenth_seconds, tenth_mb, _, _ = run_import(tenth, args.keys // 10)
    import_seconds, peak_mb, summary, size_mb = run_import(big, args.keys)
    keys_import(product=small, source="bench", entries=key_entries(f"SMALL-{i:06d}" for i in range(1000)))

    # --- claim latency: 10^3 vs 10^6 keys in stock -------------------------------
    def claim_latencies(product) -> list[float]:
        order = Order.objects.create(order_no=f"B{product.pk:013d}", token_hash="x", email="b@example.com",
                                     amount="1.00", currency="CNY")
        line = OrderLine.objects.create(order=order, product=product, quantity=1, unit_price="1.00", amount="1.00")
        timings = []
        for _ in range(args.claims):
            with transaction.atomic():
                t0 = time.perf_counter()
                keys_reserve(line=line)
                timings.append((time.perf_counter() - t0) * 1000)
                transaction.set_rollback(True)
        return timings

    def p(values, q):
        return statistics.quantiles(values, n=100)[q - 1]

    small_ms = claim_latencies(small)
    big_ms = claim_latencies(big)

    lines = [
        f"\n## import_keys and claim latency — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {machine()}; commit {commit()}",
        f"- command: `.venv/bin/python bench/import_keys.py --keys {args.keys} --claims {args.claims}`",
        f"- import: {args.keys:,} keys ({size_mb:.0f} MB file) in **{import_seconds:.1f} s** "
        f"({args.keys / import_seconds:,.0f} keys/s); peak RSS of the import process {peak_mb:.0f} MB "
        f"(a {args.keys // 10:,}-key file: {tenth_seconds:.1f} s, {tenth_mb:.0f} MB)",
        f"- import summary: `{summary}`",
        f"- claim of 1 key (`keys_reserve`, rolled back), {args.claims} runs: "
        f"1,000 keys in stock p50 {statistics.median(small_ms):.3f} ms / p95 {p(small_ms, 95):.3f} ms; "
        f"{args.keys:,} keys in stock p50 {statistics.median(big_ms):.3f} ms / p95 {p(big_ms, 95):.3f} ms "
        f"(ratio of medians {statistics.median(big_ms) / statistics.median(small_ms):.2f})",
    ]
    with open(BASE_DIR / "bench" / "RESULTS.md", "a") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
