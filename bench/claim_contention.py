"""Claim contention: ``keys_reserve`` with SKIP LOCKED vs plain FOR UPDATE, in one run.

    .venv/bin/python bench/claim_contention.py [--keys 20000] [--concurrency 16] [--duration 10]
        [--quantity 1] [--path reserve|batch] [--rounds 2] [--analyze-every 0] [--quick]

For each mode of each round (skip, plain, then plain, skip, ...: a change in
what else this shared machine runs weighs on both modes alike), on a fresh
database of its own (``kamidrop_bench_claim``, from ``stack.bench_env``): one
product with K keys imported through ``keys_import`` and K / quantity unpaid
orders of one line each. Then C claimer processes (each its own Django and
connection, ``BENCH_CLAIM_SKIP_LOCKED`` set in its environment before
``django.setup()``) start together and, for ``--duration`` seconds, take the
next unclaimed line and run what a paid transaction holds the keys for:

    BEGIN; keys_reserve(line); keys_mark_delivered(line); one OrderEvent; COMMIT

(``--path batch``: ``keys_claim`` of that one line (revealed) in place of the two,
the claim an ordinary paid order gets, in one statement.)

All claimers claim from the same product, so they all want its oldest free
keys: that is the contention. A claim that raises ``KeysUnavailable`` while
the product still has enough AVAILABLE keys is a *false short*; it is counted
and retried on the same line (its latency includes the retries). After each
mode the database is checked: no key claimed twice, every claimed line holds
exactly its quantity of keys (the ids the claimer was given), nothing left
RESERVED, one SOLD and one DELIVERED audit row per key, one event per order.
The set-up ends with ANALYZE (the statistics autovacuum takes after an
import); ``--analyze-every N`` refreshes them during the run too, which
changes the claim's plan (see "the claim's SELECT walks" in the output).

Reports claims (paid orders) per second, claim-transaction latency p50/p95/p99,
false shorts, errors, lock waits and CPU (per claim, and how much of the
machine was ours) per mode and round, then per mode over all rounds, and the
ratio; appends them to bench/RESULTS.md (not with ``--quick``: 3,000 keys,
2 s per mode, one round, a smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import bench_env, commit, free_port, machine, percentile, results_report  # noqa: E402

TARGET = "SKIP LOCKED ≥ 2× plain FOR UPDATE under contention"
# fork: the parent never imports Django, so each claimer starts clean, and
# thirty-two of them start in seconds rather than re-importing everything.
CTX = multiprocessing.get_context("fork")


# --- set-up (in a child process: Django reads the mode's environment) ----------


def _setup(env: dict, keys: int, quantity: int, done) -> None:
    os.environ.update(env)
    import django

    django.setup()
    import secrets
    from decimal import Decimal

    from django.core.management import call_command
    from django.db import connection, transaction

    from inventory.services import keys_import
    from shop.models import Order, OrderLine, Product

    call_command("migrate", verbosity=0)
    price = Decimal("10.00")
    product = Product.objects.create(slug="contended", name="Contended card", price=price, max_per_order=quantity)
    report = keys_import(product=product, source="bench",
                         entries=((i + 1, f"CLAIM-{i:07d}-{secrets.token_hex(4).upper()}") for i in range(keys)))
    with transaction.atomic():
        orders = Order.objects.bulk_create(
            Order(order_no=f"C{i:013d}", token_hash=secrets.token_hex(32), email=f"c{i}@example.com",
                  amount=price * quantity, currency="CNY")
            for i in range(keys // quantity)
        )
        lines = OrderLine.objects.bulk_create(
            OrderLine(order=o, product=product, quantity=quantity, unit_price=price, amount=price * quantity)
            for o in orders
        )
    with connection.cursor() as cursor:  # the statistics autovacuum would have taken after an import
        cursor.execute("ANALYZE")
    done.put({"product_id": product.pk, "added": report.added,
              "lines": [(line.pk, line.order_id, line.order.order_no) for line in lines]})


# --- one claimer ------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (a claimer, or its PostgreSQL backend)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    ticks = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def _claimer(env: dict, product_id: int, quantity: int, lines: list, next_line, duration: float, start, out,
             path: str) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection, transaction

    from inventory.models import CardKey, CardKeyStatus
    from inventory.services import (
        ClaimRequest,
        KeysUnavailable,
        keys_claim,
        keys_mark_delivered,
        keys_reserve,
        line_claim,
    )
    from shop.models import Order, OrderLine
    from shop.services.events import event_keys_reserved, events_save

    connection.ensure_connection()
    backend_pid = connection.connection.info.backend_pid
    result = {"latencies_ms": [], "done_at": [], "claimed": [], "false_shorts": 0, "abandoned": 0,
              "out_of_stock": False, "lines_exhausted": False, "errors": []}
    start.wait()
    cpu_before = _cpu_seconds(os.getpid()), _cpu_seconds(backend_pid)
    began = time.monotonic()
    deadline = began + duration
    while time.monotonic() < deadline:
        with next_line.get_lock():  # the claimers share one queue of unpaid lines
            index = next_line.value
            next_line.value += 1
        if index >= len(lines):
            result["lines_exhausted"] = True
            break
        line_id, order_id, order_no = lines[index]
        # The line as the paid flow holds it (its order loaded): no query here.
        line = OrderLine(pk=line_id, product_id=product_id, quantity=quantity, order_id=order_id)
        line.order = Order(pk=order_id, order_no=order_no)
        t0 = time.perf_counter()
        while True:
            try:
                with transaction.atomic():
                    if path == "batch":  # the ordinary paid order's claim, a batch of one
                        (claim,) = keys_claim(requests=[ClaimRequest(lines=[line_claim(line)])])
                        if claim.short:
                            raise KeysUnavailable(wanted=claim.short[0], claimed=claim.short[1])
                        ids = claim.keys[line_id]
                    else:
                        ids = keys_reserve(line=line)
                        keys_mark_delivered(line=line)
                    events_save(event_keys_reserved(line.order, keys=len(ids)))
            except KeysUnavailable:
                free = CardKey.objects.filter(product_id=product_id, status=CardKeyStatus.AVAILABLE).count()
                if free < quantity:
                    result["out_of_stock"] = True
                    break
                result["false_shorts"] += 1  # the stock was there: retry the same line
                if time.monotonic() < deadline:
                    continue
                result["abandoned"] += 1
                break
            except Exception as exc:  # reported and checked: a claimer must not fail silently
                result["errors"].append(f"{type(exc).__name__}: {exc}")
                break
            result["latencies_ms"].append((time.perf_counter() - t0) * 1000)
            result["done_at"].append(time.monotonic())
            result["claimed"].append((line_id, ids))
            break
        if result["out_of_stock"]:
            break
    result["began"], result["ended"] = began, time.monotonic()
    result["cpu_s"] = _cpu_seconds(os.getpid()) - cpu_before[0], _cpu_seconds(backend_pid) - cpu_before[1]
    out.put(result)


# --- one mode ---------------------------------------------------------------------


def _lock_sampler(database_url: str, stop: threading.Event, samples: list, analyze_every: float) -> None:
    """Every 100 ms: how many of the database's sessions are running a
    statement, and how many of those wait for a row lock. With
    ``analyze_every``, also ANALYZE the key table that often (what an
    autovacuum tuned for this table would do)."""
    import psycopg

    analyzed = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not stop.wait(0.1):
            if analyze_every and time.monotonic() - analyzed >= analyze_every:
                conn.execute("ANALYZE inventory_cardkey")
                analyzed = time.monotonic()
            samples.append(conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'active'), "
                "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone())


def _claim_plan(database_url: str, product_id: int) -> str:
    """Which index the claim's SELECT walks now (the planner's choice follows
    the statistics, which autovacuum refreshes during a run)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        plan = [row[0] for row in conn.execute(
            "EXPLAIN (COSTS OFF) SELECT id FROM inventory_cardkey WHERE product_id = %s AND status = 'AVAILABLE' "
            "ORDER BY id LIMIT 1 FOR UPDATE", [product_id]).fetchall()]
    return next((line.split(" using ", 1)[1].split()[0] for line in plan if " using " in line), " / ".join(plan))


def _check(database_url: str, *, product_id: int, keys: int, quantity: int, claimed: list) -> list[str]:
    """What the database says after the mode; returns the problems found."""
    import psycopg

    problems = []
    handed = Counter(key_id for _, ids in claimed for key_id in ids)
    twice = [key_id for key_id, n in handed.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} keys handed to two claims (e.g. {twice[:5]})")
    expected = {line_id: sorted(ids) for line_id, ids in claimed}
    with psycopg.connect(database_url, autocommit=True) as conn:
        held = dict(conn.execute(
            "SELECT order_line_id, array_agg(id ORDER BY id) FROM inventory_cardkey "
            "WHERE product_id = %s AND order_line_id IS NOT NULL GROUP BY order_line_id", [product_id]).fetchall())
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM inventory_cardkey WHERE product_id = %s GROUP BY status",
            [product_id]).fetchall())
        audit_twice = conn.execute(
            "SELECT count(*) FROM (SELECT card_key_id, action FROM inventory_keyauditevent "
            "WHERE action IN ('SOLD', 'DELIVERED') GROUP BY 1, 2 HAVING count(*) > 1) AS t").fetchone()[0]
        audited = dict(conn.execute(
            "SELECT action, count(*) FROM inventory_keyauditevent WHERE action IN ('SOLD', 'DELIVERED') "
            "GROUP BY action").fetchall())
        events = conn.execute(
            "SELECT count(*), count(DISTINCT order_id) FROM shop_orderevent WHERE type = 'KEYS_RESERVED'").fetchone()
    wrong_size = [line_id for line_id, ids in held.items() if len(ids) != quantity]
    if wrong_size:
        problems.append(f"{len(wrong_size)} lines hold other than {quantity} keys")
    if held != expected:
        unknown = len(set(held) - set(expected))
        missing = len(set(expected) - set(held))
        differ = sum(1 for k in set(held) & set(expected) if held[k] != expected[k])
        problems.append(f"keys on lines differ from the claims: {unknown} lines not claimed hold keys, "
                        f"{missing} claimed lines hold none, {differ} hold other ids")
    delivered = len(claimed) * quantity
    want = {"DELIVERED": delivered, "AVAILABLE": keys - delivered}
    got = {k: v for k, v in statuses.items() if v}
    if got != {k: v for k, v in want.items() if v}:
        problems.append(f"key statuses {got}, expected {want}")
    if audit_twice or audited.get("SOLD", 0) != delivered or audited.get("DELIVERED", 0) != delivered:
        problems.append(f"audit: {audited} for {delivered} keys, {audit_twice} keys audited twice for one action")
    if events != (len(claimed), len(claimed)):
        problems.append(f"KEYS_RESERVED events {events[0]} on {events[1]} orders for {len(claimed)} claims")
    return problems


def mode_run(args, *, skip_locked: bool) -> dict:
    env = bench_env(smtp_port=free_port(), web_port=free_port(), name="claim",
                    extra={"BENCH_CLAIM_SKIP_LOCKED": "1" if skip_locked else "0", "DB_CONN_MAX_AGE": "600"})
    done = CTX.Queue()
    setup = CTX.Process(target=_setup, args=(env, args.keys, args.quantity, done))
    setup.start()
    prepared = done.get()
    setup.join()
    lines = prepared["lines"]

    plan_before = _claim_plan(env["DATABASE_URL"], prepared["product_id"])
    next_line = CTX.Value("l", 0)
    start = CTX.Barrier(args.concurrency + 1)
    out = CTX.Queue()
    claimers = [CTX.Process(target=_claimer, args=(env, prepared["product_id"], args.quantity, lines, next_line,
                                                   args.duration, start, out, args.path))
                for _ in range(args.concurrency)]
    for process in claimers:
        process.start()
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=_lock_sampler, args=(env["DATABASE_URL"], stop, samples, args.analyze_every))
    start.wait(timeout=300)  # every claimer has Django set up and a connection open
    busy_before = _machine_busy()
    sampler.start()
    results = [out.get(timeout=args.duration + 600) for _ in claimers]
    busy_after = _machine_busy()
    stop.set()
    sampler.join()
    for process in claimers:
        process.join()

    plan_after = _claim_plan(env["DATABASE_URL"], prepared["product_id"])
    claimed = [c for r in results for c in r["claimed"]]
    latencies = [ms for r in results for ms in r["latencies_ms"]]
    began = min(r["began"] for r in results)
    elapsed = max(r["ended"] for r in results) - began
    per_second = Counter(int(t - began) for r in results for t in r["done_at"])
    errors = [e for r in results for e in r["errors"]]
    problems = _check(env["DATABASE_URL"], product_id=prepared["product_id"], keys=args.keys,
                      quantity=args.quantity, claimed=claimed)
    problems += [f"{len(errors)} claim errors, e.g. {errors[0]}"] if errors else []
    if prepared["added"] != args.keys:
        problems.append(f"set-up imported {prepared['added']} of {args.keys} keys")
    if any(r["out_of_stock"] for r in results):
        problems.append("stock ran out: raise --keys")
    return {
        "skip_locked": skip_locked,
        "claims": len(claimed),
        "elapsed_s": elapsed,
        "claims_per_s": len(claimed) / elapsed,
        "each_second": [per_second.get(i, 0) for i in range(max(per_second, default=-1) + 1)],
        "latencies": latencies,
        "latency": [percentile(latencies, q) for q in (50, 95, 99)],
        "max_ms": max(latencies, default=float("nan")),
        "false_shorts": sum(r["false_shorts"] for r in results),
        "abandoned": sum(r["abandoned"] for r in results),
        "lines_exhausted": any(r["lines_exhausted"] for r in results),
        "errors": len(errors),
        "problems": problems,
        "active": sum(s[0] for s in samples) / max(len(samples), 1),
        "lock_waiting": sum(s[1] for s in samples) / max(len(samples), 1),
        "plans": (plan_before, plan_after),
        "cpu_ms_per_claim": [sum(r["cpu_s"][i] for r in results) * 1000 / max(len(claimed), 1) for i in (0, 1)],
        # Of the machine's capacity during the mode: ours (claimers and their
        # backends) and everything's (other sessions share these two cores).
        "cpu_ours": sum(sum(r["cpu_s"]) for r in results) / (elapsed * os.cpu_count()),
        "cpu_machine": (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1),
    }


LABEL = {True: "SKIP LOCKED", False: "plain FOR UPDATE"}


def run_lines(run: dict, *, quantity: int) -> list[str]:
    return [
        f"- round {run['round']}, **{LABEL[run['skip_locked']]}**: {run['claims_per_s']:,.0f} claims/s "
        f"({run['claims']:,} in {run['elapsed_s']:.1f} s); claim transaction latency p50/p95/p99 "
        f"{run['latency'][0]:.1f} / {run['latency'][1]:.1f} / {run['latency'][2]:.1f} ms (max {run['max_ms']:.0f} ms); "
        f"false shorts {run['false_shorts']:,} ({run['abandoned']} given up at the end of the run); "
        f"errors {run['errors']}; sessions running a statement {run['active']:.1f} on average, "
        f"{run['lock_waiting']:.1f} of them waiting for a row lock; "
        f"CPU per claim {sum(run['cpu_ms_per_claim']):.2f} ms "
        f"({run['cpu_ms_per_claim'][0]:.2f} in the claimer, {run['cpu_ms_per_claim'][1]:.2f} in its PostgreSQL "
        f"backend); of the machine's CPU {run['cpu_ours']:.0%} ours, {run['cpu_machine']:.0%} busy in all"
        + ("; the lines ran out before the end: raise --keys" if run["lines_exhausted"] else ""),
        f"  - claims in each second: {', '.join(str(n) for n in run['each_second'])}; the claim's SELECT walks "
        f"{run['plans'][0]} at the start, {run['plans'][1]} at the end",
        "  - check: " + ("OK (no key claimed twice, every claimed line holds exactly its "
                         f"{quantity} key(s) and no other line any, nothing left RESERVED, one SOLD and "
                         "one DELIVERED audit row per key, one event per order, no errors)"
                         if not run["problems"] else "FAILED: " + "; ".join(run["problems"])),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=20000, help="keys (and lines) per mode and round")
    parser.add_argument("--concurrency", type=int, default=16, help="claimer processes")
    parser.add_argument("--duration", type=float, default=10, help="seconds of claiming per mode and round")
    parser.add_argument("--quantity", type=int, default=1, help="keys per order line")
    parser.add_argument("--path", choices=["reserve", "batch"], default="reserve",
                        help="reserve: keys_reserve + keys_mark_delivered (an odd order's claim); batch: "
                             "keys_claim of one line (an ordinary paid order's, in one statement)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of both modes, in the order skip, plain, plain, skip, ... so that a change "
                             "in what else the machine runs weighs on both modes alike")
    parser.add_argument("--analyze-every", type=float, default=0,
                        help="ANALYZE the key table every N seconds during a run (0: leave it to autovacuum)")
    parser.add_argument("--quick", action="store_true", help="3,000 keys, 2 s per mode, one round; nothing recorded")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.duration, args.rounds = 3000, 2, 1

    runs = []
    for round_no in range(1, args.rounds + 1):
        for mode in ((True, False) if round_no % 2 else (False, True)):
            run = mode_run(args, skip_locked=mode)
            run["round"] = round_no
            runs.append(run)
            print(f"round {round_no} {LABEL[mode]}: {run['claims_per_s']:,.0f} claims/s, "
                  f"{'OK' if not run['problems'] else run['problems']}", file=sys.stderr)

    command = "`.venv/bin/python bench/claim_contention.py" + "".join(f" {a}" for a in sys.argv[1:]) + "`"
    lines = [f"\n## claim contention — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {machine()}; commit {commit()}", f"- command: {command}",
             f"- {args.keys:,} keys of one product per mode and round (a fresh database each), {args.quantity} key(s) "
             f"per line, {args.concurrency} claimer processes, {args.duration:g} s per mode, {args.rounds} round(s)"
             + (f", the key table analysed every {args.analyze_every:g} s" if args.analyze_every else "") + "; "
             "one claim = one transaction: "
             + ("`keys_claim` of one line" if args.path == "batch" else "`keys_reserve` + `keys_mark_delivered`")
             + " + one OrderEvent insert, "
             "committed; false shorts (KeysUnavailable with stock left) are retried on the same line, their time "
             "counted in the claim's latency and in the elapsed time"]
    for run in runs:
        lines += run_lines(run, quantity=args.quantity)
    pooled = {}
    for mode in (True, False):
        mine = [r for r in runs if r["skip_locked"] is mode]
        latencies = [ms for r in mine for ms in r["latencies"]]
        pooled[mode] = sum(r["claims"] for r in mine) / sum(r["elapsed_s"] for r in mine)
        rates = [r["claims_per_s"] for r in mine]
        lines.append(
            f"- **{LABEL[mode]}**, all rounds: {pooled[mode]:,.0f} claims/s (rounds: "
            f"{' / '.join(f'{x:,.0f}' for x in rates)}; best {max(rates):,.0f}); latency p50/p95/p99 "
            f"{percentile(latencies, 50):.1f} / {percentile(latencies, 95):.1f} / {percentile(latencies, 99):.1f} ms; "
            f"false shorts {sum(r['false_shorts'] for r in mine):,}; checks "
            f"{'all OK' if not any(r['problems'] for r in mine) else 'FAILED'}")
    ratio = pooled[True] / pooled[False]
    per_round = [next(r for r in runs if r["round"] == n and r["skip_locked"])["claims_per_s"]
                 / next(r for r in runs if r["round"] == n and not r["skip_locked"])["claims_per_s"]
                 for n in range(1, args.rounds + 1)]
    lines.append(f"- SKIP LOCKED / plain FOR UPDATE, claims per second: **{ratio:.2f}×** (rounds: "
                 f"{' / '.join(f'{x:.2f}×' for x in per_round)}) — target \"{TARGET}\": "
                 f"{'met' if ratio >= 2 else 'missed'}")
    results_report(lines, record=not args.quick)


if __name__ == "__main__":
    main()
