"""Checkout benchmark: distinct buyers place unpaid orders of ONE hot product at once, over HTTP.

    .venv/bin/python bench/checkout.py [--via api|web|both] [--keys 1000] [--checkouts 1000]
        [--concurrency 64] [--runs 3] [--conn-max-age N] [--no-access-log] [--raw PATH] [--record]

    .venv/bin/python bench/checkout.py --via api --keys 1000000 --runs 1

Each run starts a fresh stack (bench/stack.py, name "checkout": a database
and Redis of its own) with the image's defaults: gunicorn gthread 3 workers ×
4 threads with the Dockerfile's access log (``--access-logfile -`` through
``shop.project.accesslog.RedactingLogger``, and ``--worker-tmp-dir /dev/shm``,
passed in GUNICORN_CMD_ARGS), DEBUG off, LOG_LEVEL INFO, DB_CONN_MAX_AGE 60
(the settings' default; ``--conn-max-age`` to change it), one RQ worker at
compose's CPU weight and the sweeper. TRUSTED_PROXIES=127.0.0.1, so every
buyer has an address of its own through X-Forwarded-For.

The set-up (a product with K real sealed keys, through the import service
``keys_import``, then ANALYZE of the keys' table) is timed on its own. The load
(bench/checkout_load.py, a separate process) sends N = min(--checkouts, K)
checkouts over C connections: through POST /api/v1/orders, the product page's
form (GET for the CSRF cookie and token, then POST; success is the 302 to the
payment), or both, alternating. Reported: successful checkouts/s, latency
p50/p95/p99 of successful checkouts, refusals by error code, HTTP errors, CPU
per checkout of the web processes, of PostgreSQL and Redis (machine-wide:
they are shared with anything else running, which is reported) and of the
load process (the web's does not depend on what else the machine runs; the
rate does), peak RSS of the web processes and the load average; over the
runs, the spread, and the machine's CPU per checkout: on 2 cores, R
checkouts/s leave 2000 / R ms of CPU per checkout for everything.

Then checked against the database, exit 1 on any failure: every buyer is
distinct and N ≤ K, so every checkout must succeed; the successes are exactly
the PENDING_PAYMENT orders created; live holds never exceed the stock; no
OUT_OF_STOCK while stock was left; the shop shows K − successes in stock; when
sold out, one more checkout is refused OUT_OF_STOCK; and ``manage.py audit``.
Nothing is written to bench/RESULTS.md without ``--record``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import BASE_DIR, PY, Stack, commit, machine, percentile, results_report

SLUG = "hot"
PRICE = "10.00"


def product_setup(*, slug: str, keys: int) -> None:
    """In the stack's environment (``--setup``): the product and its K sealed keys."""
    import secrets

    import django

    sys.path.insert(0, str(BASE_DIR))
    django.setup()
    from django.db import connection

    from inventory.models import CardKey
    from inventory.services import keys_import
    from shop.models import Product

    started = time.perf_counter()
    product = Product.objects.create(slug=slug, name="Hot card", price=PRICE, max_per_order=1)
    salt = secrets.token_hex(4).upper()
    report = keys_import(product=product, source="bench checkout",
                         entries=((i + 1, f"HOT-{i:08d}-{salt}") for i in range(keys)))
    imported = time.perf_counter() - started
    with connection.cursor() as cursor:  # the keys' statistics, as autovacuum would have them in production
        cursor.execute(f"ANALYZE {CardKey._meta.db_table}")
    print(json.dumps({"product_id": product.pk, "added": report.added, "import_s": imported,
                      "analyze_s": time.perf_counter() - started - imported}))


def shop_get_json(stack: Stack, path: str, *, body: dict | None = None, ip: str = "192.0.2.9") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.web_port}{path}", data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "X-Forwarded-For": ip})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def run_once(args, number: int) -> dict:
    checkouts = min(args.checkouts, args.keys)
    # The image's command and settings' defaults unless told otherwise; every
    # buyer's address is read from X-Forwarded-For, as behind the shop's proxy.
    stack = Stack(web_workers=args.web_workers, web_threads=args.web_threads, rq_workers=args.rq_workers,
                  conn_max_age=args.conn_max_age, access_log=not args.no_access_log,
                  extra_env={"TRUSTED_PROXIES": "127.0.0.1"}, name="checkout")
    # As the image's build does; with DEBUG off the pages need the manifest,
    # and WhiteNoise indexes the files once, when gunicorn starts.
    stack.manage("collectstatic", "--noinput", "-v", "0")
    with stack:
        started = time.perf_counter()
        setup = json.loads(stack.manage_script("bench/checkout.py", "--setup", "--keys", str(args.keys)))
        setup["wall_s"] = time.perf_counter() - started
        import psutil

        peak = {"web": 0.0}
        sampling = threading.Event()

        others: set[str] = set()

        def sample():
            while not sampling.is_set():
                with contextlib.suppress(psutil.Error):  # a process gone between two reads
                    peak["web"] = max(peak["web"], stack.rss_mb("web"))
                others.update(others_running(stack))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        load_before = os.getloadavg()[0]
        web_cpu_before, load_cpu_before = web_cpu_s(stack), children_cpu_s()
        servers_before = servers_cpu_s()
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([PY, "bench/checkout_load.py", "--base", f"http://127.0.0.1:{stack.web_port}",
                            "--slug", SLUG, "--via", args.via, "--checkouts", str(checkouts),
                            "--concurrency", str(args.concurrency), "--run", str(number), "--out", out.name],
                           cwd=BASE_DIR, check=True)
            loaded = json.loads(Path(out.name).read_text())
        if args.raw:  # every request's outcome and latency, for a closer look
            Path(f"{args.raw}.run{number + 1}.json").write_text(json.dumps(loaded))
        web_cpu, load_cpu = web_cpu_s(stack) - web_cpu_before, children_cpu_s() - load_cpu_before
        servers = {name: cpu - servers_before.get(name, 0.0) for name, cpu in servers_cpu_s().items()}
        sampling.set()
        sampler.join()
        run = summarise(loaded, checkouts=checkouts, keys=args.keys)
        run.update(setup=setup, peak_web_mb=peak["web"], load_before=load_before, load_after=os.getloadavg()[0],
                   settings=stack.settings_text(), web_cpu_ms=web_cpu * 1000 / checkouts,
                   load_cpu_ms=load_cpu * 1000 / checkouts, others=sorted(others),
                   postgres_cpu_ms=servers["postgres"] * 1000 / checkouts,
                   redis_cpu_ms=servers["redis"] * 1000 / checkouts)
        run.update(database_check(stack, product_id=setup["product_id"], keys=args.keys))
        run["problems"] = verdict(run, keys=args.keys, checkouts=checkouts)
        return run


def web_cpu_s(stack: Stack) -> float:
    """CPU seconds (user + system) the gunicorn master and its workers have used."""
    import psutil

    root = psutil.Process(stack.processes["web"].pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def servers_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of every PostgreSQL process (the postmaster,
    its backends, and the backends that ended: the postmaster's reaped
    children) and of every Redis server on the machine. Machine-wide: with
    other benchmarks or tests running (reported) it counts theirs too."""
    import psutil

    total = {"postgres": 0.0, "redis": 0.0}
    for process in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            name = process.info["name"] or ""
            kind = "postgres" if name == "postgres" else "redis" if name.startswith("redis-server") else None
            if kind is None:
                continue
            times = process.cpu_times()
            total[kind] += times.user + times.system
            if kind == "postgres" and process.ppid() != 0 and psutil.Process(process.ppid()).name() != "postgres":
                total[kind] += times.children_user + times.children_system  # the postmaster's ended backends
    return total


def others_running(stack: Stack) -> set[str]:
    """Other benchmarks and test runs on the machine (not this one's stack or
    load): their scripts' names, for the report."""
    import psutil

    mine = {os.getpid(), *(process.pid for process in stack.processes.values())}
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):  # it may end while being looked at
            argv = process.info["cmdline"] or []
            if process.info["pid"] in mine or os.getpgid(process.info["pid"]) in mine:
                continue
            if "checkout_load.py" in " ".join(argv):
                continue
            for word in argv[1:3]:
                if word.startswith("bench/") or "/bench/" in word or word == "pytest":
                    found.add(os.path.basename(word))
    return found


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the load process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarise(loaded: dict, *, checkouts: int, keys: int) -> dict:
    results = loaded["results"]
    ok = [r for r in results if r["ok"]]
    refused = [r for r in results if not r["ok"]]
    codes = Counter(r["code"] for r in refused)
    by_via = {}
    for via in sorted({r["via"] for r in results}):
        mine = [r["latency_ms"] for r in ok if r["via"] == via]
        by_via[via] = {"ok": len(mine), "p50": percentile(mine, 50), "p99": percentile(mine, 99)}
    latencies = [r["latency_ms"] for r in ok]
    pages = [r["page_ms"] for r in results if r.get("page_ms") is not None]
    # Any OUT_OF_STOCK while fewer than K orders had succeeded came while stock was left.
    ordered = sorted(results, key=lambda r: r["done_at"])
    succeeded = 0
    oos_with_stock = 0
    for r in ordered:
        succeeded += r["ok"]
        if not r["ok"] and r["code"] == "OUT_OF_STOCK" and succeeded < keys:
            oos_with_stock += 1
    return {
        "elapsed_s": loaded["elapsed_s"], "checkouts": checkouts, "ok": len(ok),
        "per_s": len(ok) / loaded["elapsed_s"],
        "latency": [percentile(latencies, q) for q in (50, 95, 99)],
        "page": [percentile(pages, q) for q in (50, 99)] if pages else None,
        "codes": dict(codes), "http_errors": sum(1 for r in refused if r["status"] >= 500 or r["status"] == 0),
        "by_via": by_via, "oos_with_stock": oos_with_stock, "reconnects": loaded["reconnects"],
        "order_nos": sorted(r["order_no"] for r in ok),
    }


def database_check(stack: Stack, *, product_id: int, keys: int) -> dict:
    import psycopg

    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        statuses = dict(conn.execute(
            "SELECT o.status, count(DISTINCT o.id) FROM shop_order o JOIN shop_orderline l ON l.order_id = o.id "
            "WHERE l.product_id = %s GROUP BY o.status", [product_id]).fetchall())
        live_held = conn.execute(
            "SELECT coalesce(sum(l.quantity), 0) FROM shop_order o JOIN shop_orderline l ON l.order_id = o.id "
            "WHERE l.product_id = %s AND o.status = 'PENDING_PAYMENT' AND o.hold_expires_at > now()",
            [product_id]).fetchone()[0]
        order_nos = sorted(row[0] for row in conn.execute(
            "SELECT DISTINCT o.order_no FROM shop_order o JOIN shop_orderline l ON l.order_id = o.id "
            "WHERE l.product_id = %s AND o.status = 'PENDING_PAYMENT'", [product_id]).fetchall())
    status, listed = shop_get_json(stack, "/api/v1/products")
    shown = next((p["stock"] for p in listed if p["slug"] == SLUG), None) if status == 200 else None
    probe = None
    if live_held >= keys:  # sold out: one more buyer must be refused for stock
        status, body = shop_get_json(stack, "/api/v1/orders", ip="192.0.2.77", body={
            "product": SLUG, "quantity": 1, "email": "late-buyer@example.com", "provider": "epay",
            "device_id": "benchdev-late-buyer-0001"})
        probe = (status, (body.get("error") or {}).get("code", body.get("status", "")))
    audit = stack.manage("audit", check=False)
    return {"statuses": statuses, "live_held": int(live_held), "db_order_nos": order_nos, "stock_shown": shown,
            "probe": probe, "audit": (audit.returncode, ((audit.stdout or audit.stderr).strip().splitlines()
                                                         or [""])[-1])}


def verdict(run: dict, *, keys: int, checkouts: int) -> list[str]:
    problems = []
    pending = run["statuses"].get("PENDING_PAYMENT", 0)
    if run["ok"] != pending:
        problems.append(f"{run['ok']} successful checkouts but {pending} PENDING_PAYMENT orders")
    if run["order_nos"] != run["db_order_nos"]:
        problems.append("the orders the buyers were given are not the PENDING_PAYMENT orders in the database")
    if set(run["statuses"]) - {"PENDING_PAYMENT"}:
        problems.append(f"orders in other statuses: {run['statuses']}")
    if run["live_held"] > keys:
        problems.append(f"HELD BEYOND STOCK: {run['live_held']} held by live unpaid orders, {keys} keys")
    if run["oos_with_stock"]:
        problems.append(f"{run['oos_with_stock']} OUT_OF_STOCK while stock was left")
    if run["ok"] != checkouts:
        problems.append(f"{checkouts - run['ok']} of {checkouts} checkouts refused or failed (distinct buyers, "
                        f"N ≤ K: all must succeed): {run['codes']}")
    if run["stock_shown"] != keys - run["live_held"]:
        problems.append(f"the shop shows {run['stock_shown']} in stock, expected {keys - run['live_held']}")
    if run["probe"] is not None and run["probe"] != (409, "OUT_OF_STOCK"):
        problems.append(f"sold out, yet one more checkout got {run['probe']}")
    if run["audit"][0] != 0:
        problems.append(f"audit exit {run['audit'][0]}: {run['audit'][1]}")
    return problems


def spread(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return (f"median {format(statistics.median(values), fmt)}, min {format(min(values), fmt)}, "
            f"max {format(max(values), fmt)}")


def report(args, runs: list[dict]) -> list[str]:
    checkouts = min(args.checkouts, args.keys)
    command = "`.venv/bin/python bench/checkout.py " + " ".join(sys.argv[1:]) + "`"
    lines = [f"\n## checkout, one hot product — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
             "", f"- machine: {machine()}; commit {commit()}", f"- command: {command}",
             (f"- via {args.via}; {args.keys:,} keys; {checkouts:,} checkouts by distinct buyers (own address, "
              f"email, device); {args.concurrency} at once"),
             (f"- stack: {runs[0]['settings']}; DEBUG off, {args.rq_workers} RQ worker, the sweeper, "
              "TRUSTED_PROXIES=127.0.0.1, static files collected as the image build does")]
    for n, run in enumerate(runs, 1):
        setup = run["setup"]
        vias = "; ".join(f"{via} {v['ok']:,} ok, p50/p99 {v['p50']:.0f} / {v['p99']:.0f} ms"
                         for via, v in run["by_via"].items()) if len(run["by_via"]) > 1 else ""
        lines += [
            f"- run {n}: **{run['per_s']:,.1f} checkouts/s** ({run['ok']:,} in {run['elapsed_s']:.1f} s); "
            f"latency of successful checkouts p50/p95/p99 {run['latency'][0]:,.0f} / {run['latency'][1]:,.0f} / "
            f"{run['latency'][2]:,.0f} ms"
            + (f"; product page GET p50/p99 {run['page'][0]:,.0f} / {run['page'][1]:,.0f} ms" if run["page"] else "")
            + f"; refusals {run['codes'] or 'none'}; HTTP errors {run['http_errors']}; CPU per checkout: web "
            f"{run['web_cpu_ms']:.1f} ms, PostgreSQL {run['postgres_cpu_ms']:.1f} ms, Redis {run['redis_cpu_ms']:.1f} ms, "
            f"load process {run['load_cpu_ms']:.1f} ms; peak RSS web "
            f"{run['peak_web_mb']:.0f} MB; load average {run['load_before']:.1f} → {run['load_after']:.1f}; "
            f"other benchmarks or tests running: {', '.join(run['others']) or 'none seen'}"
            + (f"; {vias}" if vias else ""),
            f"  - set-up (not timed in the run): {setup['added']:,} keys imported in {setup['import_s']:.1f} s, "
            f"ANALYZE {setup['analyze_s']:.1f} s, {setup['wall_s']:.1f} s in all; orders {run['statuses']}, "
            f"live holds {run['live_held']:,}, shop shows {run['stock_shown']} in stock"
            + (f", one more checkout: {run['probe'][0]} {run['probe'][1]}" if run["probe"] else "")
            + f"; audit exit {run['audit'][0]}",
            "  - verdict: " + ("OK" if not run["problems"] else "FAILED: " + "; ".join(run["problems"])),
        ]
    if len(runs) > 1:
        lines.append(f"- spread over {len(runs)} runs: checkouts/s {spread([r['per_s'] for r in runs], ',.1f')}; "
                     f"p99 ms {spread([r['latency'][2] for r in runs], ',.0f')}; "
                     f"p50 ms {spread([r['latency'][0] for r in runs], ',.0f')}; machine CPU per checkout (web, "
                     "PostgreSQL, Redis, load) ms "
                     f"{spread([r['web_cpu_ms'] + r['postgres_cpu_ms'] + r['redis_cpu_ms'] + r['load_cpu_ms'] for r in runs], '.1f')}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--via", choices=["api", "web", "both"], default="api")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--checkouts", type=int, default=1000, help="capped by --keys")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3, help="each on a fresh stack")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="DB_CONN_MAX_AGE for the stack (default: the settings' 60)")
    parser.add_argument("--no-access-log", action="store_true",
                        help="without the image's access log (gunicorn's, and the shop's at INFO)")
    parser.add_argument("--web-workers", type=int, default=None, help="gunicorn workers (default: the image's)")
    parser.add_argument("--web-threads", type=int, default=None, help="threads per worker (default: the image's)")
    parser.add_argument("--rq-workers", type=int, default=1, help="compose runs one")
    parser.add_argument("--raw", default="", help="also write each run's requests to RAW.runN.json")
    parser.add_argument("--record", action="store_true", help="append the section to bench/RESULTS.md")
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        product_setup(slug=SLUG, keys=args.keys)
        return
    runs = [run_once(args, number) for number in range(args.runs)]
    results_report(report(args, runs), record=args.record)
    if any(run["problems"] for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
