"""Chaos run: a flash sale while things break, then prove nothing was lost.

    .venv/bin/python bench/chaos.py [--orders 2000 --keys 2000]

During the run: every notify is sent three times, shuffled (out of order, at
random moments), plus forged and wrong-amount notifies; a worker is SIGKILLed
every few seconds (and restarted); Redis is stopped for 10 s; the SMTP sink
refuses 30 % of messages. Afterwards every genuine paid order must have its
keys delivered, none twice; forged and mismatched notifies must have changed
nothing; `manage.py audit` must be clean. Duplicate emails caused by a worker
dying mid-send are counted. Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from stack import BASE_DIR, BENCH_REDIS_ROOT, PY, Stack, commit, machine, results_report  # noqa: E402

from shop.project import embedded  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--drain-timeout", type=float, default=240)
    parser.add_argument("--send-lease", type=int, default=90,
                        help="seconds before a send claimed by a SIGKILLed worker may be tried again "
                             "(keep it above a batch's send time: a smaller lease may send twice)")
    parser.add_argument("--redis-down", type=float, default=10, help="seconds Redis stays stopped")
    parser.add_argument("--rate", type=float, default=0, help="pace the notifies (so that a small run meets the faults)")
    parser.add_argument("--smoke", action="store_true",
                        help="a check, not a measurement (make test): nothing is written to RESULTS.md; "
                             "exit 1 when an invariant fails")
    args = parser.parse_args()
    name = "chaos_smoke" if args.smoke else ""
    redis_root = BENCH_REDIS_ROOT / name if name else BENCH_REDIS_ROOT
    extra = {
        "DELIVERY_RETRY_SCHEDULE": "1,2,3,5,5,5,5,5,5,5,5,5",
        "SWEEP_INTERVAL_SECONDS": "3",
        "SWEEP_ORPHAN_AFTER_SECONDS": "5",
        "DELIVERY_SEND_LEASE_SECONDS": str(args.send_lease),
    }
    started = time.monotonic()
    with Stack(web_workers=3, web_worker_class="gthread", web_threads=4, rq_workers=2, smtp_fail_rate=0.3,
               extra_env=extra, name=name) as stack:
        bodies_path = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False).name
        tampered = max(1, args.orders // 20)
        stack.manage_script("bench/flash_setup.py", "--keys", str(args.keys), "--orders", str(args.orders),
                            "--bodies", bodies_path, "--copies", "3", "--forged", str(tampered),
                            "--wrong-amount", str(tampered))
        sent = len(Path(bodies_path).read_text().splitlines())

        stop = threading.Event()
        kills = Counter()

        def chaos():
            n = 0
            redis_stopped_once = False
            while not stop.wait(args.kill_every):
                kills["workers restarted after exiting"] += stack.workers_revive()
                name = f"worker{n % 2}"
                stack.stop(name, sig=9)
                kills["workers SIGKILLed"] += 1
                stack.start_worker(name)
                n += 1
                if not redis_stopped_once and n == 2:
                    embedded.redis_stop(root=redis_root)
                    kills[f"Redis stopped ({args.redis_down:g} s)"] += 1
                    time.sleep(args.redis_down)
                    embedded.redis_ensure(root=redis_root)
                    redis_stopped_once = True

        chaos_thread = threading.Thread(target=chaos)
        chaos_thread.start()
        out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
        subprocess.run([PY, "bench/load.py", "--url", f"http://127.0.0.1:{stack.web_port}/payments/epay/notify",
                        "--bodies", bodies_path, "--concurrency", str(args.concurrency), "--out", out,
                        *(["--rate", str(args.rate)] if args.rate else [])],
                       cwd=BASE_DIR, check=True)
        replies = Counter(r["reply"] if r else "none" for r in json.load(open(out))["results"])
        stop.set()
        chaos_thread.join()
        kills["workers restarted after exiting"] += stack.workers_revive()  # healthy workers for the drain

        conn = psycopg.connect(stack.env["DATABASE_URL"], autocommit=True)
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            pending = conn.execute(
                "SELECT (SELECT count(*) FROM delivery_delivery WHERE status = 'PENDING') "
                "+ (SELECT count(*) FROM payments_paymentevent WHERE outcome = 'RECEIVED')").fetchone()[0]
            if pending == 0:
                break
            kills["workers restarted after exiting"] += stack.workers_revive()
            time.sleep(1)
        facts = {
            "orders by status": dict(conn.execute("SELECT status, count(*) FROM shop_order GROUP BY status").fetchall()),
            "deliveries by status": dict(conn.execute(
                "SELECT channel || ' ' || status, count(*) FROM delivery_delivery GROUP BY 1").fetchall()),
            "keys delivered": conn.execute(
                "SELECT count(*) FROM inventory_cardkey WHERE status = 'DELIVERED'").fetchone()[0],
            "keys on two lines": conn.execute(
                "SELECT count(*) FROM (SELECT order_line_id FROM inventory_cardkey WHERE order_line_id IS NOT NULL "
                "GROUP BY order_line_id HAVING count(*) > 1) AS x").fetchone()[0],
            "payments succeeded": conn.execute(
                "SELECT count(*) FROM payments_payment WHERE status = 'SUCCEEDED'").fetchone()[0],
            "events accepted": conn.execute(
                "SELECT count(*) FROM payments_paymentevent WHERE outcome = 'ACCEPTED'").fetchone()[0],
            "wrong-amount notices rejected": conn.execute(
                "SELECT count(*) FROM payments_paymentevent WHERE outcome = 'REJECTED' "
                "AND reason_code = 'AMOUNT_MISMATCH'").fetchone()[0],
        }
        facts["last sweep"] = str(conn.execute("SELECT max(started_at) FROM delivery_sweeprun").fetchone()[0])
        facts["last sweep result"] = conn.execute("SELECT result FROM delivery_sweeprun LIMIT 1").fetchone()
        conn.close()
        arrivals = Counter(record["message_id"] for record in stack.sink_arrivals())
        duplicates = sum(n - 1 for n in arrivals.values() if n > 1)
        audit = stack.manage("audit", check=False)

    orders = facts["orders by status"]
    problems = []
    paid = sum(n for s, n in orders.items() if s not in ("PENDING_PAYMENT", "EXPIRED"))
    if paid != args.orders:
        problems.append(f"{args.orders - paid} genuine payments not applied")
    if orders.get("DELIVERED", 0) + orders.get("AWAITING_STOCK", 0) != args.orders:
        problems.append(f"orders not settled: {orders}")
    if facts["keys on two lines"] or facts["keys delivered"] > args.keys:
        problems.append("a key delivered twice or oversold")
    if facts["payments succeeded"] != args.orders or facts["events accepted"] != args.orders:
        problems.append("forged or mismatched notifies changed payments")
    if facts["wrong-amount notices rejected"] != tampered:
        problems.append(f"{tampered - facts['wrong-amount notices rejected']} wrong-amount notices not rejected")
    if audit.returncode != 0:
        problems.append(f"audit exit {audit.returncode}")
    lines = [
        f"\n## chaos run — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"- machine: {machine()}; commit {commit()}",
        f"- command: `.venv/bin/python bench/chaos.py {' '.join(sys.argv[1:])}`",
        f"- {args.orders:,} orders, {args.keys:,} keys; {sent:,} notifies: each genuine one ×3, shuffled, plus "
        f"{tampered} forged and {tampered} wrong-amount; SMTP sink refusing 30 %; "
        + ", ".join(f"{k}: {v}" for k, v in kills.items()) + f"; total {time.monotonic() - started:.0f} s",
        f"- replies: {dict(replies)}",
        f"- {facts}",
        f"- duplicate emails (a worker died mid-send): {duplicates}; `manage.py audit` exit {audit.returncode}",
        f"- verdict: {'OK: nothing lost, nothing twice, forged and mismatched changed nothing' if not problems else '; '.join(problems)}",
    ]
    results_report(lines, record=not args.smoke)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
