"""Email throughput: how fast the project's workers drain a backlog of key
emails into a local SMTP sink (the sending alone: orders are paid in bulk first).

    .venv/bin/python bench/email_throughput.py [--orders 3000] [--workers 4]
"""

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from stack import Stack, commit, machine, results_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="")
    parser.add_argument("--name", default="", help="the stack's database and Redis (bench/stack.py)")
    parser.add_argument("--no-record", action="store_true", help="print the section, do not append it to RESULTS.md")
    args = parser.parse_args()
    with Stack(web_workers=1, rq_workers=0, worker_class=args.worker_class, name=args.name) as stack:
        settings_text = stack.settings_text()
        stack.manage_script("bench/email_backlog.py", "--orders", str(args.orders))
        started = time.time()
        for n in range(args.workers):
            stack.start_worker(f"worker{n}")
        conn = psycopg.connect(stack.env["DATABASE_URL"], autocommit=True)
        while time.time() - started < 600:
            sent = conn.execute(
                "SELECT count(*) FROM delivery_delivery WHERE channel = 'EMAIL' AND status = 'SENT'").fetchone()[0]
            if sent >= args.orders:
                break
            time.sleep(0.2)
        conn.close()
        arrivals = sorted(record["at"] for record in stack.sink_arrivals())
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    lines = [
        f"\n## email throughput — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"- machine: {machine()}; commit {commit()}",
        f"- command: `.venv/bin/python bench/email_throughput.py {' '.join(sys.argv[1:])}`",
        f"- stack: {settings_text} (the web idles here)",
        f"- {len(arrivals):,} of {args.orders:,} key emails accepted by the SMTP sink in {span:.1f} s: "
        f"**{len(arrivals) / span:,.0f} emails/s** with {args.workers} workers"
        + (f" ({args.worker_class})" if args.worker_class else " (delivery.worker.SweepingWorker)")
        + f"; first email {arrivals[0] - started:.1f} s after the workers were started",
    ]
    results_report(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
