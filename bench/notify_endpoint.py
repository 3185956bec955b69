"""Notify endpoint alone: how many signed payment callbacks per second the web
tier stores and acknowledges, with no applier running.

    .venv/bin/python bench/notify_endpoint.py [--orders 10000 --concurrency 64]
        [--web-workers 10 --worker-class sync|gthread --threads 1] [--no-keepalive]
        [--label TEXT] [--no-record]

Starts the stack with no RQ worker and no sweeper (either would apply the
stored notices and take the cores from the endpoint), creates N unpaid EPay
orders and their N signed notifies, fires them from a separate load process
(bench/load.py; ``--no-keepalive``: a new connection per notify, as a
gateway sends them) and checks that every reply is ``success`` and that
exactly N notices are stored as RECEIVED: nothing lost, nothing applied behind
the endpoint's back. Reports callbacks/s, latency, the CPU each part spent
per callback (and what other processes on the machine took meanwhile), the
database connections the web tier opened during the load, and appends them
to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
import psycopg  # noqa: E402
from stack import BASE_DIR, PY, Stack, commit, machine, percentile, results_report  # noqa: E402


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_pid() -> int | None:
    """The embedded PostgreSQL's postmaster (its backends are its children)."""
    from shop.project import embedded

    return embedded._postgres_pid(embedded.data_dir() / "pg")


def db_sessions(conn) -> int:
    return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args) -> dict:
    # A database and Redis of its own ("notify"): another benchmark may be running.
    with Stack(web_workers=args.web_workers, rq_workers=0, sweeper=False, web_worker_class=args.worker_class,
               web_threads=args.threads, name="notify") as stack:
        bodies = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False).name
        setup = stack.manage_script("bench/flash_setup.py", "--keys", "1", "--orders", str(args.orders),
                                    "--bodies", bodies)
        out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
        load = [PY, "bench/load.py", "--url", f"http://127.0.0.1:{stack.web_port}/payments/epay/notify",
                "--bodies", bodies, "--concurrency", str(args.concurrency), "--out", out]
        if args.no_keepalive:
            load.append("--close")
        database = psycopg.connect(stack.env["DATABASE_URL"], autocommit=True)
        sessions_before = db_sessions(database)
        pg = postgres_pid()
        web_before, pg_before = tree_cpu_seconds(stack.processes["web"].pid), tree_cpu_seconds(pg) if pg else 0.0
        machine_before, load_before = psutil.cpu_times(), children_cpu_seconds()
        subprocess.run(load, cwd=BASE_DIR, check=True)
        machine_after, load_after = psutil.cpu_times(), children_cpu_seconds()
        web_cpu = tree_cpu_seconds(stack.processes["web"].pid) - web_before
        pg_cpu = (tree_cpu_seconds(pg) - pg_before) if pg else float("nan")
        # Sessions opened while the load ran (the load opens none): with
        # persistent connections, at most one per web thread.
        sessions_opened = db_sessions(database) - sessions_before
        loaded = json.load(open(out))
        results = [r for r in loaded["results"] if r]
        with database:
            outcomes = dict(database.execute(
                "SELECT outcome, count(*) FROM payments_paymentevent GROUP BY outcome").fetchall())
            distinct = database.execute("SELECT count(DISTINCT external_id) FROM payments_paymentevent "
                                        "WHERE outcome = 'RECEIVED'").fetchone()[0]
        import redis

        queued = redis.Redis.from_url(stack.env["REDIS_URL"]).llen("rq:queue:payments")
    busy = sum(getattr(machine_after, f) - getattr(machine_before, f) for f in ("user", "system", "nice", "irq",
                                                                                   "softirq", "steal"))
    idle = sum(getattr(machine_after, f) - getattr(machine_before, f) for f in ("idle", "iowait"))
    load_cpu = load_after - load_before
    replies: dict[str, int] = {}
    for r in results:
        key = r["reply"] if r["status"] == 200 else f"{r['status']} {r['reply']}"
        replies[key] = replies.get(key, 0) + 1
    n = len(results)
    return {
        "setup": setup.strip(),
        "elapsed_s": loaded["elapsed_s"],
        "answered": n,
        "callbacks_per_s": n / loaded["elapsed_s"],
        "replies": replies,
        "latency": [percentile([r["latency_ms"] for r in results], q) for q in (50, 95, 99)],
        "max_ms": max((r["latency_ms"] for r in results), default=float("nan")),
        "outcomes": outcomes,
        "distinct_received": distinct,
        "queued_jobs": queued,
        "cpu_ms": {"web": web_cpu * 1000 / max(n, 1), "postgres": pg_cpu * 1000 / max(n, 1),
                   "load": load_cpu * 1000 / max(n, 1)},
        "machine_busy": busy / max(busy + idle, 1e-9),
        # CPU the rest of the machine took (other jobs, the kernel's share
        # not charged to a process), as a fraction of both cores.
        "others_busy": max(0.0, busy - web_cpu - pg_cpu - load_cpu) / max(busy + idle, 1e-9),
        "sessions_opened": sessions_opened,
    }


def verdict(run: dict, orders: int) -> list[str]:
    problems = []
    if run["answered"] != orders:
        problems.append(f"{orders - run['answered']} requests never answered")
    if run["replies"].get("success", 0) != orders:
        problems.append(f"replies other than success: {run['replies']}")
    if run["outcomes"] != {"RECEIVED": orders} or run["distinct_received"] != orders:
        problems.append(f"stored notices {run['outcomes']} ({run['distinct_received']} distinct), expected "
                        f"{orders} RECEIVED")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--web-workers", type=int, default=10)
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-keepalive", action="store_true", help="a new connection per notify")
    parser.add_argument("--label", default="", help="what this run measures, for RESULTS.md")
    parser.add_argument("--no-record", action="store_true", help="print the figures, leave RESULTS.md alone")
    args = parser.parse_args()

    run = run_once(args)
    problems = verdict(run, args.orders)
    # gunicorn runs gthread whenever threads > 1, whatever the class says.
    worker_class = "gthread" if args.threads > 1 else args.worker_class
    command = "`" + shlex.join([".venv/bin/python", "bench/notify_endpoint.py", *sys.argv[1:]]) + "`"
    cpu = run["cpu_ms"]
    lines = [
        f"\n## notify endpoint — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        + (f" ({args.label})" if args.label else ""), "",
        f"- machine: {machine()}; commit {commit()}", f"- command: {command}",
        f"- {args.orders:,} signed EPay notifies, concurrency {args.concurrency} "
        + ("(a new connection per notify)" if args.no_keepalive else "(keep-alive where the server allows it)")
        + f"; gunicorn {args.web_workers} {worker_class} workers"
        + (f" × {args.threads} threads" if args.threads > 1 else "") + "; no RQ worker, no sweeper",
        f"- **{run['callbacks_per_s']:,.0f} callbacks/s** ({run['answered']:,} in {run['elapsed_s']:.1f} s); "
        f"latency p50/p95/p99 {run['latency'][0]:.0f} / {run['latency'][1]:.0f} / {run['latency'][2]:.0f} ms "
        f"(max {run['max_ms']:.0f} ms)",
        f"- CPU per callback: web {cpu['web']:.2f} ms, PostgreSQL {cpu['postgres']:.2f} ms, load generator "
        f"{cpu['load']:.2f} ms; machine busy {run['machine_busy']:.0%} during the load, of which other "
        f"processes {run['others_busy']:.0%}",
        f"- replies: {run['replies']}; stored: {run['outcomes']}; applier jobs queued: {run['queued_jobs']}; "
        f"database sessions opened during the load: {run['sessions_opened']}",
        "- verdict: " + ("; ".join(problems) if problems
                         else "OK (every reply success, exactly one RECEIVED notice per order)"),
    ]
    results_report(lines, record=not args.no_record)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
