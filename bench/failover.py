"""Failover benchmark: the primary dies during a flash sale, and no payment the
shop acknowledged is lost.

    .venv/bin/python bench/failover.py [--orders 3000 --rate 150 --kill-after 6] [--runs 3] [--no-record]
    .venv/bin/python bench/failover.py --smoke   # a check (tests/flows/test_failover_smoke.py)

Starts a PostgreSQL HA cluster on loopback from Debian's packages
(bench/patroni_cluster.py: etcd and two Patroni nodes, a primary and a
synchronous standby; installed with apt-get when missing), creates the shop's
database there, and runs the production-shaped stack (bench/stack.py) with a
multi-host ``DATABASE_URL`` (``…@node1,node2/…?target_session_attrs=read-write``).
Then a flash sale: N signed EPay notifies paced at R a second, each sent
again, as a gateway does, until it is answered ``success`` (after 0.5, 1, then
every 2 s). ``--kill-after`` seconds into the sale the primary's machine dies:
Patroni, the postmaster and every postgres child are frozen and SIGKILLed at
once (killing only the postmaster, Patroni restarts it in place: no failover;
killing only Patroni, the old primary keeps running beside the new one). The
sending goes on through the gap.

Every attempt's reply is recorded. Afterwards, on the new primary: each notice
answered ``success`` must have its payment SUCCEEDED and its order paid (an
acknowledged payment lost otherwise), each notice must have been answered
``success`` in the end, every paid order's email must have been sent (the RQ
workers came back on new connections), the sweeper must have swept after the
takeover, and ``manage.py audit`` must be clean.

Takeover is measured from commit timestamps (``track_commit_timestamp``,
replicated with each commit): every transaction id from before the sale to
the end is read on the new primary; the last commit before the kill (the old
primary's last one that reached the standby) → the first after it (the new
primary's first). The replies give the gateway's view beside it: the last
``success`` before the kill → the first after it.

Appends "failover: N notices, 0 acknowledged payments lost, takeover X s" per
run to bench/RESULTS.md with the machine, the commit and the settings.
The bench deviates from production in one setting, named in the report: the
sweeper sweeps every 10 s (default 60), so that a sweep falls into the gap.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import heapq
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from patroni_cluster import PatroniCluster
from stack import Stack, commit, machine, percentile, results_report

RETRY_DELAYS = (0.5, 1.0, 2.0)  # then every 2 s
PAID = ("PAID", "IN_REVIEW", "AWAITING_STOCK", "FULFILLING", "DELIVERED")


async def _post(reader, writer, head: bytes, body: bytes) -> tuple[int, str, bool]:
    writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status = int((await asyncio.wait_for(reader.readline(), 30)).split()[1])
    length, close = 0, False
    while (line := await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    return status, (await reader.readexactly(length)).decode(errors="replace")[:40].strip(), close


async def provider_send(*, port: int, bodies: list[str], rate: float, concurrency: int, give_up_after: float,
                        started: threading.Event) -> list[list[dict]]:
    """Send each body at its turn (``rate`` a second) and again after each
    reply that is not ``success`` (RETRY_DELAYS), as a gateway does, until
    every one is acknowledged or ``give_up_after`` seconds have passed.
    Returns every attempt per body: sent at (``time.time()``), latency, status, reply."""
    head = (f"POST /payments/epay/notify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nConnection: keep-alive\r\n").encode()
    attempts: list[list[dict]] = [[] for _ in bodies]
    due = [(i / rate, i) for i in range(len(bodies))]  # (seconds after the start, body): a heap
    acknowledged = 0
    t0 = time.perf_counter()
    started.set()

    async def client() -> None:
        nonlocal acknowledged
        reader = writer = None
        while acknowledged < len(bodies) and time.perf_counter() - t0 < give_up_after:
            if not due or due[0][0] > time.perf_counter() - t0:
                await asyncio.sleep(0.005)
                continue
            _, i = heapq.heappop(due)
            sent_at, t = time.time(), time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                status, reply, close = await _post(reader, writer, head, bodies[i].encode())
            except (TimeoutError, OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
                status, reply, close = 0, f"error {type(exc).__name__}", True
            attempts[i].append({"at": sent_at, "ms": (time.perf_counter() - t) * 1000, "status": status,
                                "reply": reply})
            if close and writer is not None:
                writer.close()
                reader = writer = None
            if status == 200 and reply == "success":
                acknowledged += 1
            else:
                failures = len(attempts[i])
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
                heapq.heappush(due, (time.perf_counter() - t0 + delay, i))
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return attempts


def run_once(args, log=print) -> dict:
    t0 = time.monotonic()

    def phase(what: str) -> None:
        log(f"{time.monotonic() - t0:5.1f} s  {what}")

    with PatroniCluster(log=phase) as cluster:
        phase("cluster up: a leader and a synchronous standby")
        old = cluster.leader()
        dsn = cluster.database_create(name="kamidrop_failover", user="kamidrop")
        extra = {"DATABASE_URL": dsn, "SWEEP_INTERVAL_SECONDS": f"{args.sweep_every:g}"}
        if args.delivery_retry:
            extra["DELIVERY_RETRY_SCHEDULE"] = args.delivery_retry
        if args.send_lease:
            extra["DELIVERY_SEND_LEASE_SECONDS"] = str(args.send_lease)
        with Stack(rq_workers=2, extra_env=extra, name="failover") as stack:
            phase("migrated, stack up")
            with tempfile.NamedTemporaryFile("w+", suffix=".txt") as bodies_file:
                stack.manage_script("bench/flash_setup.py", "--keys", str(args.orders), "--orders",
                                    str(args.orders), "--bodies", bodies_file.name)
                bodies = Path(bodies_file.name).read_text().splitlines()
            order_nos = [parse_qs(body)["out_trade_no"][0] for body in bodies]
            phase(f"{len(bodies)} orders and keys set up; the sale starts")
            with psycopg.connect(cluster.superuser_dsn(old, "kamidrop_failover"), autocommit=True) as conn:
                xid_from = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
            killed = {}
            started = threading.Event()

            def kill():
                if started.wait(60) and not stopping.wait(args.kill_after):
                    killed["at"] = cluster.node_kill(old)

            stopping = threading.Event()
            killer = threading.Thread(target=kill)
            killer.start()
            try:
                attempts = asyncio.run(provider_send(port=stack.web_port, bodies=bodies, rate=args.rate,
                                                     concurrency=args.concurrency, give_up_after=args.give_up_after,
                                                     started=started))
            finally:
                stopping.set()
                started.set()  # a sale that failed to start: the killer stops waiting
                killer.join()
            phase("every notice acknowledged (or given up)")
            if "at" not in killed:
                raise RuntimeError("the sale ended before the primary was killed: raise --orders or lower --kill-after")
            return _after_the_sale(args, cluster, stack, old, dsn, order_nos, attempts, killed["at"], xid_from, phase)


def _commit_times(cluster, node, xid_from: int) -> list[float]:
    """The commit time of every transaction since ``xid_from``, as the new
    primary has them (those replicated from the old primary, then its own)."""
    with psycopg.connect(cluster.superuser_dsn(node, "kamidrop_failover"), autocommit=True) as su:
        xid_to = su.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
        return [float(t) for (t,) in su.execute(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(x::text::xid)) "
            "FROM generate_series(%s::bigint, %s::bigint) AS x", [xid_from, xid_to]).fetchall() if t is not None]


def _after_the_sale(args, cluster, stack, old, dsn, order_nos, attempts, kill_at, xid_from, phase) -> dict:
    new = cluster.leader()
    first_new_commit = min((t for t in _commit_times(cluster, new, xid_from) if t > kill_at), default=None)
    conn = psycopg.connect(dsn, autocommit=True)
    port = conn.execute("SELECT inet_server_port()").fetchone()[0]
    deadline = time.monotonic() + args.drain_timeout
    seen, logged = None, 0.0
    while time.monotonic() < deadline:  # the applier works through the stored notices, the workers send
        notices, deliveries, swept = conn.execute(
            "SELECT (SELECT count(*) FROM payments_paymentevent WHERE outcome = 'RECEIVED'), "
            "(SELECT count(*) FROM delivery_delivery WHERE status = 'PENDING'), "
            "(SELECT max(finished_at) FROM delivery_sweeprun)").fetchone()
        swept_after = bool(swept and first_new_commit) and swept.timestamp() > first_new_commit
        if not notices and not deliveries and swept_after:
            break
        if (notices, deliveries, swept_after) != seen and time.monotonic() - logged > 5:
            seen, logged = (notices, deliveries, swept_after), time.monotonic()
            phase(f"waiting: {notices} notices to apply, {deliveries} deliveries pending, "
                  f"swept after the takeover {swept_after}")
        time.sleep(0.5)
    phase("the stored notices applied, the emails sent, a sweep after the takeover")
    rows = conn.execute(
        "SELECT o.order_no, o.status, p.status, e.outcome FROM shop_order o "
        "JOIN payments_payment p ON p.order_id = o.id "
        "LEFT JOIN payments_paymentevent e ON e.provider = 'epay' AND e.reference = o.order_no").fetchall()
    state = {no: (order, payment, event) for no, order, payment, event in rows}
    emails = conn.execute("SELECT count(*) FILTER (WHERE status = 'SENT'), count(*) FROM delivery_delivery "
                          "WHERE channel = 'EMAIL'").fetchone()
    swept_at = conn.execute("SELECT max(finished_at) FROM delivery_sweeprun").fetchone()[0]
    conn.close()
    commits = _commit_times(cluster, new, xid_from)
    sent = Counter(record["message_id"] for record in stack.sink_arrivals())
    audit = stack.manage("audit", check=False)
    phase("audited")
    sweeper_failures = Path(stack.log_path("sweeper")).read_text().count("sweep failed")

    acked = [i for i, tries in enumerate(attempts) if any(a["reply"] == "success" for a in tries)]
    # Acknowledged, so it must be on the new primary: the order paid, the payment and the notice applied.
    lost = [order_nos[i] for i in acked if not _paid(state.get(order_nos[i]))]
    first_success = {i: next(a["at"] + a["ms"] / 1000 for a in attempts[i] if a["reply"] == "success") for i in acked}
    before = [t for t in commits if t <= kill_at]
    after = [t for t in commits if t > kill_at]
    replies = Counter((a["reply"] if a["status"] in (0, 200) else f"HTTP {a['status']}") for tries in attempts
                      for a in tries)
    ok_before = [t for t in first_success.values() if t <= kill_at]
    ok_after = [a["at"] + a["ms"] / 1000 for tries in attempts for a in tries
                if a["reply"] == "success" and a["at"] > kill_at]
    return {
        "notices": len(attempts),
        "acknowledged": len(acked),
        "acknowledged_before_kill": len(ok_before),
        "lost": lost,
        "never_acknowledged": len(attempts) - len(acked),
        "retried": sum(1 for i in acked if len(attempts[i]) > 1),
        "attempts": sum(len(tries) for tries in attempts),
        "replies": dict(replies),
        "takeover": (min(after) - max(before)) if before and after else float("nan"),
        "reply_gap": (min(ok_after) - max(ok_before)) if ok_before and ok_after else float("nan"),
        "kill_to_first_commit": (min(after) - kill_at) if after else float("nan"),
        "old": f"{old.name} (:{old.pg_port})", "new": f"{new.name} (:{new.pg_port})" if new else "none",
        "dsn_reached_new": bool(new) and port == new.pg_port,
        "orders": dict(Counter(s[0] for s in state.values())),
        "emails": emails,
        "duplicate_emails": sum(n - 1 for n in sent.values() if n > 1),
        "swept_after": bool(swept_at and first_new_commit) and swept_at.timestamp() > first_new_commit,
        "sweeper_failures": sweeper_failures,
        "workers_alive": all(p.poll() is None for n, p in stack.processes.items() if n.startswith("worker")),
        "sweeper_alive": stack.processes["sweeper"].poll() is None,
        "audit": (audit.returncode, ((audit.stdout or audit.stderr).strip().splitlines() or [""])[-1]),
        "latency_p99": percentile([a["ms"] for tries in attempts for a in tries], 99),
        "settings": stack.settings_text(),
        "cluster": cluster.describe(),
    }


def _paid(state: tuple | None) -> bool:
    return state is not None and state[0] in PAID and state[1] == "SUCCEEDED" and state[2] == "ACCEPTED"


def problems(run: dict, args) -> list[str]:
    out = []
    if run["lost"]:
        out.append(f"{len(run['lost'])} acknowledged payments lost: {run['lost'][:5]}")
    if run["never_acknowledged"]:
        out.append(f"{run['never_acknowledged']} notices never answered success within {args.give_up_after:g} s")
    if not run["retried"]:
        out.append("no notice met the gap (the kill fell outside the sale)")
    if not run["dsn_reached_new"]:
        out.append(f"the multi-host DSN did not reach the new primary {run['new']}")
    if sum(run["orders"].get(s, 0) for s in PAID) != run["notices"]:
        out.append(f"orders not all paid: {run['orders']}")
    if run["emails"][0] != run["emails"][1] or not run["workers_alive"]:
        out.append(f"RQ workers did not recover: {run['emails'][0]} of {run['emails'][1]} emails sent, "
                   f"workers alive {run['workers_alive']}")
    if not (run["swept_after"] and run["sweeper_alive"]):
        out.append("the sweeper did not sweep after the takeover")
    if run["audit"][0] != 0:
        out.append(f"audit exit {run['audit'][0]}: {run['audit'][1]}")
    if not run["takeover"] <= 15:
        out.append(f"takeover {run['takeover']:.1f} s > 15 s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=3000, help="notices (one order and one key each)")
    parser.add_argument("--rate", type=float, default=150, help="new notices a second")
    parser.add_argument("--kill-after", type=float, default=6, help="seconds into the sale")
    parser.add_argument("--concurrency", type=int, default=16, help="the gateway's connections")
    parser.add_argument("--give-up-after", type=float, default=180)
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sweep-every", type=float, default=10, help="SWEEP_INTERVAL_SECONDS (production: 60)")
    parser.add_argument("--delivery-retry", default="",
                        help="DELIVERY_RETRY_SCHEDULE (default: production's 10, 30, 120 s…: an email whose send "
                             "failed twice in the gap waits 2 min)")
    parser.add_argument("--send-lease", type=int, default=0,
                        help="DELIVERY_SEND_LEASE_SECONDS (default: production's 90: an email sent in the gap "
                             "whose SENT mark failed is sent again once its lease lapses)")
    parser.add_argument("--no-record", action="store_true", help="print the section, leave RESULTS.md alone")
    parser.add_argument("--smoke", action="store_true",
                        help="a check, not a measurement: 300 notices at 60/s, the kill at 2 s, a sweep every 5 s, "
                             "DELIVERY_RETRY_SCHEDULE 2,5,10,30, DELIVERY_SEND_LEASE_SECONDS 10; "
                             "nothing is written to RESULTS.md; exit 1 when a check fails")
    args = parser.parse_args()
    if args.smoke:
        args.orders, args.rate, args.kill_after, args.sweep_every, args.runs = 300, 60, 2, 5, 1
        args.delivery_retry, args.send_lease = "2,5,10,30", 10
        args.no_record = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleans up through the with blocks
    runs = []
    for n in range(args.runs):
        run = run_once(args)
        runs.append(run)
        print(f"run {n + 1}: takeover {run['takeover']:.2f} s, lost {len(run['lost'])}, "
              f"problems {problems(run, args) or 'none'}", flush=True)
    lines = [f"\n## failover — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {machine()}; commit {commit()}",
             f"- command: `.venv/bin/python bench/failover.py {' '.join(sys.argv[1:])}`",
             (f"- cluster: {runs[0]['cluster']}; the apps through "
             "`postgres://…@node1,node2/…?target_session_attrs=read-write`"),
             f"- stack: {runs[0]['settings']}; bench deviation: sweeper every {args.sweep_every:g} s (default 60)"
             + (f", DELIVERY_RETRY_SCHEDULE={args.delivery_retry}" if args.delivery_retry else "")
             + (f", DELIVERY_SEND_LEASE_SECONDS={args.send_lease}" if args.send_lease else ""),
             (f"- sale: {args.orders:,} signed EPay notifies at {args.rate:g}/s over {args.concurrency} connections, "
             f"each retried after {', '.join(f'{d:g}' for d in RETRY_DELAYS)} s then every "
             f"{RETRY_DELAYS[-1]:g} s until `success`; at {args.kill_after:g} s the primary's machine dies "
             "(Patroni, the postmaster and its children SIGSTOPped then SIGKILLed together)"),
             ("- takeover: commit timestamps on the new primary (track_commit_timestamp), the last commit "
             "before the kill → the first after it")]
    for n, run in enumerate(runs, 1):
        trouble = problems(run, args)
        lines += [
            (f"- run {n}: failover: {run['notices']} notices, {len(run['lost'])} acknowledged payments lost, "
            f"takeover {run['takeover']:.1f} s"),
            (f"  - {run['old']} killed, {run['new']} took over; "
            f"kill → first commit {run['kill_to_first_commit']:.1f} s; "
            f"gateway's view, last `success` → first `success` after the kill {run['reply_gap']:.1f} s"),
            (f"  - {run['acknowledged']:,} acknowledged ({run['acknowledged_before_kill']:,} by the old primary), "
            f"{run['retried']:,} of them after a retry; {run['attempts']:,} attempts, replies {run['replies']}; "
            f"p99 {run['latency_p99']:.0f} ms"),
            (f"  - orders {run['orders']}; emails sent {run['emails'][0]:,}/{run['emails'][1]:,}, "
            f"{run['duplicate_emails']} twice (sent in the gap, their SENT mark lost, sent again after the send "
            f"lease); RQ workers alive "
            f"{run['workers_alive']}; sweeper: alive {run['sweeper_alive']}, {run['sweeper_failures']} failed "
            f"sweeps in the gap, swept after the takeover {run['swept_after']}; audit exit {run['audit'][0]} "
            f"{run['audit'][1]}"),
            f"  - verdict: {'OK' if not trouble else '; '.join(trouble)}",
        ]
    if len(runs) > 1:
        takeovers = sorted(run["takeover"] for run in runs)
        lines.append(f"- spread over {len(runs)} runs: takeover {takeovers[0]:.1f}–{takeovers[-1]:.1f} s, "
                     f"acknowledged payments lost {sum(len(r['lost']) for r in runs)}")
    results_report(lines, record=not args.no_record)
    if any(problems(run, args) for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
