"""Flash-sale benchmark: N buyers pay for K keys (N > K) at once.

    .venv/bin/python bench/flash_sale.py [--keys 5000 --orders 10000 --concurrency 32]
        [--claim skip|plain|both] [--rate 0 [--seconds S]] [--web-workers 3] [--web-worker-class gthread]
        [--web-threads 4] [--rq-workers 2] [--conn-max-age 60] [--no-access-log] [--worker-nice 0]

Starts the stack (gunicorn, RQ workers, SMTP sink) on the embedded servers,
creates K keys and N unpaid EPay orders, fires N signed notifies over HTTP from
a separate load process, waits until every fulfilled order's email reached
the SMTP sink, then checks: no oversell, no key twice, every order DELIVERED or
AWAITING_STOCK, and `manage.py audit`. Reports callbacks/s, callback latency,
orders paid per second (the applier behind the inbox), notify → key visible
(a sample of orders polled as the order page reads them), notify → email and
paid → email latency, emails/s and peak memory, and appends them to
bench/RESULTS.md.

It runs with production's defaults (bench/stack.py: the image's gunicorn
command with its access log, ``DB_CONN_MAX_AGE`` 60, compose's CPU weights);
each flag that deviates is named in the report. ``--rate R --seconds S`` is
the steady sale: R notifies a second for S seconds (R × S orders, a key each
unless ``--keys`` says otherwise).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from stack import BASE_DIR, PY, WORKER_NICE, Stack, commit, machine, percentile, results_report  # noqa: E402

# 1 order in KEY_SAMPLE is polled for when its key becomes visible.
KEY_SAMPLE = 10
KEY_POLL_SECONDS = 0.05


class KeyWatch:
    """Polls a sample of orders, as the order page and the API read them
    (status FULFILLING or DELIVERED: the keys and the inbox delivery commit
    with it), and records when each was first seen (``time.time()``, to
    ``KEY_POLL_SECONDS``)."""

    def __init__(self, database_url: str, order_nos: list[str]):
        self.database_url = database_url
        self.unseen = set(order_nos)
        self.seen: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while self.unseen and not self.stopping.is_set():
                rows = conn.execute("SELECT order_no FROM shop_order WHERE order_no = ANY(%s) "
                                    "AND status IN ('FULFILLING', 'DELIVERED')", [list(self.unseen)]).fetchall()
                now = time.time()
                for (order_no,) in rows:
                    self.seen[order_no] = now
                    self.unseen.discard(order_no)
                time.sleep(KEY_POLL_SECONDS)

    def __enter__(self) -> "KeyWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()


def run_once(args, *, skip_locked: bool, during=None, launcher: list[str] | None = None) -> dict:
    """One sale on a fresh stack. ``during(stack)``, if given, is a context
    manager factory entered around the load and the drain, ``launcher`` the
    stack's (bench/profile_flash.py: a profiler and its query counter)."""
    import contextlib

    extra = {"BENCH_CLAIM_SKIP_LOCKED": "1" if skip_locked else "0"}
    with Stack(web_workers=args.web_workers, rq_workers=args.rq_workers, worker_class=args.worker_class,
               web_worker_class=args.web_worker_class, web_threads=args.web_threads, extra_env=extra,
               name="smoke" if args.smoke else args.name, worker_nice=args.worker_nice,
               conn_max_age=args.conn_max_age, access_log=not args.no_access_log, launcher=launcher) as stack:
        bodies = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False).name
        setup = stack.manage_script("bench/flash_setup.py", "--keys", str(args.keys), "--orders", str(args.orders),
                                    "--bodies", bodies)
        peaks = {"web": 0.0, "workers": 0.0}
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                try:
                    peaks["web"] = max(peaks["web"], stack.rss_mb("web"))
                    peaks["workers"] = max(peaks["workers"], sum(stack.rss_mb(n) for n in stack.processes
                                                                 if n.startswith("worker")))
                except Exception:
                    pass
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        conn = psycopg.connect(stack.env["DATABASE_URL"], autocommit=True)
        sample_nos = [no for (no,) in conn.execute(
            "SELECT order_no FROM shop_order ORDER BY id").fetchall()][::KEY_SAMPLE]
        out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
        load = [PY, "bench/load.py", "--url", f"http://127.0.0.1:{stack.web_port}/payments/epay/notify",
                "--bodies", bodies, "--concurrency", str(args.concurrency), "--out", out]
        if args.rate:
            load += ["--rate", str(args.rate)]
        import subprocess

        with KeyWatch(stack.env["DATABASE_URL"], sample_nos) as watch, \
                (during(stack) if during else contextlib.nullcontext()):
            subprocess.run(load, cwd=BASE_DIR, check=True)
            loaded = json.load(open(out))
            results = [r for r in loaded["results"] if r]
            deadline = time.monotonic() + args.drain_timeout
            while time.monotonic() < deadline:  # the applier works through the stored notices
                waiting = conn.execute(
                    "SELECT count(*) FROM payments_paymentevent WHERE outcome = 'RECEIVED'").fetchone()[0]
                if not waiting:
                    break
                time.sleep(0.2)
            fulfilled = conn.execute(
                "SELECT count(*) FROM shop_order WHERE status IN ('FULFILLING', 'DELIVERED')").fetchone()[0]
            while time.monotonic() < deadline:
                sent = conn.execute(
                    "SELECT count(*) FROM delivery_delivery WHERE channel = 'EMAIL' AND status = 'SENT'").fetchone()[0]
                if sent >= fulfilled:
                    break
                time.sleep(0.2)
        sampling.set()
        sampler.join()
        paid_at = dict(conn.execute(
            "SELECT order_no, extract(epoch FROM paid_at) FROM shop_order WHERE paid_at IS NOT NULL").fetchall())
        # When the shop first heard of each payment: the notify stored in the inbox.
        notified_at = dict(conn.execute(
            "SELECT reference, extract(epoch FROM min(received_at)) FROM payments_paymentevent "
            "WHERE outcome = 'ACCEPTED' GROUP BY reference").fetchall())
        first_notice, last_paid = conn.execute(
            "SELECT extract(epoch FROM (SELECT min(received_at) FROM payments_paymentevent)), "
            "extract(epoch FROM (SELECT max(paid_at) FROM shop_order))").fetchone()
        arrivals = {}
        for record in stack.sink_arrivals():
            order_no = record["message_id"].split(".", 1)[-1].split("@", 1)[0]
            arrivals.setdefault(order_no, record["at"])
        email_ms = [(arrivals[no] - float(paid_at[no])) * 1000 for no in arrivals if no in paid_at]
        notify_email_ms = [(arrivals[no] - float(notified_at[no])) * 1000 for no in arrivals if no in notified_at]
        notify_key_ms = [(watch.seen[no] - float(notified_at[no])) * 1000 for no in watch.seen if no in notified_at]
        arrived = sorted(arrivals.values())
        emails_per_s = (len(arrived) - 1) / (arrived[-1] - arrived[0]) if len(arrived) > 1 else float("nan")
        statuses = dict(conn.execute("SELECT status, count(*) FROM shop_order GROUP BY status").fetchall())
        delivered_keys = conn.execute(
            "SELECT count(*), count(DISTINCT order_line_id) FROM inventory_cardkey WHERE status = 'DELIVERED'"
        ).fetchone()
        conn.close()
        audit = stack.manage("audit", check=False)
        return {
            "skip_locked": skip_locked,
            "setup": setup.strip(),
            "elapsed_s": loaded["elapsed_s"],
            "callbacks_per_s": len(results) / loaded["elapsed_s"],
            "ok_replies": sum(1 for r in results if r["reply"] == "success"),
            "latency": [percentile([r["latency_ms"] for r in results], q) for q in (50, 95, 99)],
            "email_ms": [percentile(email_ms, q) for q in (50, 95, 99)],
            "notify_email_ms": [percentile(notify_email_ms, q) for q in (50, 95, 99)],
            "notify_key_ms": [percentile(notify_key_ms, q) for q in (50, 95, 99)],
            "key_sample": len(notify_key_ms),
            "emails_per_s": emails_per_s,
            "settings": stack.settings_text(),
            "paid_per_s": len(paid_at) / max(float(last_paid) - float(first_notice), 1e-9),
            "emails": len(email_ms),
            "statuses": statuses,
            "delivered_keys": delivered_keys[0],
            "distinct_lines": delivered_keys[1],
            "audit": (audit.returncode, (audit.stdout or audit.stderr).strip().splitlines()[-1:] or [""]),
            "peak_web_mb": peaks["web"],
            "peak_workers_mb": peaks["workers"],
        }


def verdict(run: dict, keys: int, orders: int) -> list[str]:
    problems = []
    if run["delivered_keys"] > keys:
        problems.append(f"OVERSOLD: {run['delivered_keys']} keys delivered of {keys}")
    if run["delivered_keys"] != run["distinct_lines"]:
        problems.append("a key is on two lines")
    done = run["statuses"].get("DELIVERED", 0) + run["statuses"].get("AWAITING_STOCK", 0)
    if done != orders:
        problems.append(f"{orders - done} orders neither DELIVERED nor AWAITING_STOCK: {run['statuses']}")
    if run["audit"][0] != 0:
        problems.append(f"audit exit {run['audit'][0]}: {run['audit'][1]}")
    return problems


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=None, help="default 5000 (the steady sale: one per order)")
    parser.add_argument("--orders", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0, help="notifies per second (default: as fast as answered)")
    parser.add_argument("--seconds", type=float, default=0, help="with --rate: the steady sale, rate × seconds orders")
    parser.add_argument("--claim", choices=["skip", "plain", "both"], default="both")
    parser.add_argument("--web-workers", type=int, default=None, help="gunicorn's (default: the image's, 3)")
    parser.add_argument("--web-worker-class", default=None, help="gunicorn's (default: the image's, gthread)")
    parser.add_argument("--web-threads", type=int, default=None, help="gunicorn's (default: the image's, 4)")
    parser.add_argument("--worker-nice", type=int, default=WORKER_NICE,
                        help="the RQ workers' CPU weight as a nice level (default: compose's cpu_shares)")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="DB_CONN_MAX_AGE (default: the settings' default, 60)")
    parser.add_argument("--no-access-log", action="store_true",
                        help="no gunicorn access log and LOG_LEVEL=WARNING (production logs both)")
    parser.add_argument("--rq-workers", type=int, default=2)
    parser.add_argument("--worker-class", default="")
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--name", default="flash", help="the stack's database and Redis (bench/stack.py)")
    parser.add_argument("--no-record", action="store_true", help="print the section, do not append it to RESULTS.md")
    parser.add_argument("--smoke", action="store_true",
                        help="a check, not a measurement (make test): nothing is written to RESULTS.md; "
                             "exit 1 when an invariant fails")
    return parser


def main() -> None:
    args = arguments().parse_args()
    if args.seconds:
        if not args.rate:
            raise SystemExit("--seconds needs --rate")
        args.orders = round(args.rate * args.seconds)
    if args.keys is None:
        args.keys = args.orders if args.seconds else 5000

    modes = {"skip": [True], "plain": [False], "both": [True, False]}[args.claim]
    runs = [run_once(args, skip_locked=mode) for mode in modes]
    command = "`.venv/bin/python bench/flash_sale.py " + " ".join(sys.argv[1:]) + "`"
    lines = [f"\n## flash sale — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {machine()}; commit {commit()}", f"- command: {command}",
             f"- {args.keys:,} keys, {args.orders:,} orders, concurrency {args.concurrency}"
             + (f", paced at {args.rate:g}/s" if args.rate else "")
             + (f" for {args.seconds:g} s" if args.seconds else "")
             + f"; {args.rq_workers} RQ workers" + (f" ({args.worker_class})" if args.worker_class else ""),
             f"- stack: {runs[0]['settings']}"]
    for run in runs:
        label = "SKIP LOCKED" if run["skip_locked"] else "plain FOR UPDATE"
        problems = verdict(run, args.keys, args.orders)
        lines += [
            f"- **{label}**: {run['callbacks_per_s']:,.0f} callbacks/s ({args.orders:,} in {run['elapsed_s']:.1f} s, "
            f"{run['ok_replies']:,} answered success); callback latency p50/p95/p99 "
            f"{run['latency'][0]:.0f} / {run['latency'][1]:.0f} / {run['latency'][2]:.0f} ms; "
            f"orders paid {run['paid_per_s']:,.0f}/s (first notify stored → last order paid); "
            f"notify → key visible p50/p95/p99 {run['notify_key_ms'][0]:,.0f} / {run['notify_key_ms'][1]:,.0f} / "
            f"{run['notify_key_ms'][2]:,.0f} ms ({run['key_sample']:,} orders polled every "
            f"{KEY_POLL_SECONDS * 1000:.0f} ms); "
            f"notify → email accepted by SMTP p50/p95/p99 {run['notify_email_ms'][0]:,.0f} / "
            f"{run['notify_email_ms'][1]:,.0f} / {run['notify_email_ms'][2]:,.0f} ms, paid → email "
            f"{run['email_ms'][0]:,.0f} / {run['email_ms'][1]:,.0f} / {run['email_ms'][2]:,.0f} ms "
            f"({run['emails']:,} emails, {run['emails_per_s']:,.0f}/s first → last); "
            f"peak RSS web {run['peak_web_mb']:.0f} MB, workers {run['peak_workers_mb']:.0f} MB",
            f"  - orders: {run['statuses']}; keys delivered {run['delivered_keys']:,} on "
            f"{run['distinct_lines']:,} lines; audit: exit {run['audit'][0]} {run['audit'][1][0] if run['audit'][1] else ''}",
            f"  - verdict: {'OK (no oversell, no key twice, every order DELIVERED or AWAITING_STOCK)' if not problems else '; '.join(problems)}",
        ]
    if len(runs) == 2:
        lines.append(f"- SKIP LOCKED / plain FOR UPDATE, orders paid per second (the claim runs in the "
                     f"applier's batches, not in the callback): {runs[0]['paid_per_s'] / runs[1]['paid_per_s']:.2f}×")
    results_report(lines, record=not (args.smoke or args.no_record))
    if any(verdict(run, args.keys, args.orders) for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
