"""Where each millisecond of a flash-sale order goes: reply, pay, email.

    .venv/bin/python bench/profile_flash.py [flash_sale.py's options] [--py-spy] [--out /tmp/profile_flash.md]
    .venv/bin/python bench/profile_flash.py --report DIR   # the report of a run measured before

Runs one bench/flash_sale.py sale (production defaults unless told otherwise)
and, over the load and the drain, measures:

- the CPU of each process group (web, RQ workers, PostgreSQL, Redis, the SMTP
  sink, the load generator), user + system from /proc, reaped children included;
- queries, connections opened and client-side database time by stage, counted
  inside the web and the workers: this file is their launcher (``--hook``) and
  wraps every connection. A query's stage is the request (``reply``) in the
  web, the RQ job in a worker (``pay``: the applier of stored notices;
  ``email``: the delivery send jobs);
- with ``--py-spy`` (``pip install py-spy``): samples of the thread holding
  the GIL in the web and the workers, split by the job on the stack (the
  workers' CPU is divided between pay and email by them), and the top
  functions of each stage. py-spy costs CPU: the sale runs slower.

The Markdown breakdown goes to ``--out``; nothing goes to RESULTS.md.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import resource
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# --- the launcher's hook (runs inside the web and the workers) ---------------


def _stage(is_web: bool) -> str:
    if is_web:
        return "reply"
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        return "other"
    name = job.func_name
    if "payment_notices" in name:
        return "pay"
    if ".deliver" in name:
        return "email"
    return "other"


def hook_install(out_dir: str, *, is_web: bool) -> None:
    """Count every query of this process (and of the processes it forks) by stage."""
    from django.db.backends.signals import connection_created

    counts: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])  # queries, seconds, connections
    state = {"pid": os.getpid(), "written": 0.0}
    lock = threading.Lock()

    def forked() -> None:
        if state["pid"] != os.getpid():  # gunicorn's workers: counts of their own
            state["pid"] = os.getpid()
            counts.clear()

    def write(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - state["written"] < 1.0:
            return
        state["written"] = now
        path = Path(out_dir) / f"queries-{os.getpid()}.json"
        path.write_text(json.dumps({"web": is_web, "counts": dict(counts)}))

    def counter(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            with lock:
                forked()
                row = counts[_stage(is_web)]
                row[0] += 1
                row[1] += time.perf_counter() - started
                write()

    def connected(sender, connection, **kwargs):
        with lock:
            forked()
            counts[_stage(is_web)][2] += 1
        # One wrapper per thread's connection object, however often it reconnects.
        if counter not in connection.execute_wrappers:
            connection.execute_wrappers.append(counter)

    connection_created.connect(connected, weak=False)
    atexit.register(lambda: write(force=True))
    # gunicorn's and rq's workers leave on SIGTERM through sys.exit: atexit runs.


def launch(argv: list[str]) -> None:
    """``--hook DIR [-m module | script] args…``: install the hook, then run it as ``python`` would."""
    out_dir, rest = argv[0], argv[1:]
    if rest[0] == "-m":
        module, args = rest[1], rest[2:]
        sys.argv = [module, *args]
        hook_install(out_dir, is_web=module == "gunicorn")
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script, args = rest[0], rest[1:]
        sys.argv = [script, *args]
        sys.path.insert(0, str(Path(script).resolve().parent))
        hook_install(out_dir, is_web=False)
        runpy.run_path(script, run_name="__main__")


# --- the measurement (runs in the benchmark's process) -----------------------


def _tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants, their reaped children included."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _postmaster_pid() -> int:
    from shop.project import embedded

    pid_file = embedded.data_dir() / "pg" / "postmaster.pid"
    return int(pid_file.read_text().split()[0])


def _redis_pid(stack) -> int | None:
    import psutil

    socket = stack.env["REDIS_URL"].split("unix://", 1)[-1].split("?", 1)[0]
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "redis-server" in (proc.info["name"] or "") + cmdline and Path(socket).parent.name in cmdline:
            return proc.pid
    return None


class Profile:
    """The context manager flash_sale.run_once enters around the load and the drain."""

    def __init__(self, *, py_spy: bool, rate: int, spy_dir: str):
        self.py_spy, self.rate, self.spy_dir = py_spy, rate, spy_dir
        self.cpu: dict[str, float] = {}
        self.spies: list[tuple[str, subprocess.Popen, str]] = []
        self.wall = 0.0

    def groups(self) -> dict[str, float]:
        stack = self.stack
        out = {"web": _tree_seconds(stack.processes["web"].pid),
               "RQ workers": sum(_tree_seconds(p.pid) for n, p in stack.processes.items() if n.startswith("worker")),
               "PostgreSQL (whole server)": _tree_seconds(_postmaster_pid()),
               "SMTP sink": _tree_seconds(stack.processes["smtp"].pid)}
        if "sweeper" in stack.processes:
            out["sweeper"] = _tree_seconds(stack.processes["sweeper"].pid)
        redis_pid = _redis_pid(stack)
        if redis_pid:
            out["Redis"] = _tree_seconds(redis_pid)
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["load generator (reaped children of the bench)"] = children.ru_utime + children.ru_stime
        out["bench process (key poller, sampler)"] = me.ru_utime + me.ru_stime
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # user nice system, irq softirq steal
        out["machine (all CPUs, /proc/stat)"] = (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")
        return out

    def __call__(self, stack):
        self.stack = stack
        return self

    def __enter__(self):
        self.start = self.groups()
        self.started = time.monotonic()
        if self.py_spy:
            targets = [("web", self.stack.processes["web"].pid)]
            targets += [(n, p.pid) for n, p in self.stack.processes.items() if n.startswith("worker")]
            for name, pid in targets:
                out = str(Path(self.spy_dir) / f"spy-{name}.txt")
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                                        "--subprocesses", "--nonblocking", "--gil", "--rate", str(self.rate),
                                        "--format",
                                        "raw", "--output", out], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                self.spies.append((name, spy, out))
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.started
        end = self.groups()
        self.cpu = {name: end[name] - self.start.get(name, 0.0) for name in end}
        for _, spy, _ in self.spies:
            spy.send_signal(signal.SIGINT)
        for _, spy, _ in self.spies:
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()


def _queries(hook_dir: str) -> dict[str, list[float]]:
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
    for path in Path(hook_dir).glob("queries-*.json"):
        data = json.loads(path.read_text())
        for stage, row in data["counts"].items():
            for i, value in enumerate(row):
                totals[stage][i] += value
    return totals


def _spy_stacks(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    if not Path(path).exists():
        return stacks
    for line in Path(path).read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _spy_stage(frames: list[str], is_web: bool) -> str:
    text = ";".join(frames)
    if is_web:
        return "reply" if "wsgi" in text or "handle_request" in text else "web (gunicorn's loop)"
    if "payment_notices_drain_job" in text:
        return "pay"
    if "deliveries_send_job" in text or "delivery_send_job" in text:
        return "email"
    return "worker (rq's loop, other jobs)"


def _function(frame: str) -> str:
    # "function (path/to/module.py:123)" → "function (to/module.py)": one row per function, not per line
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    parts = Path(path).parts
    for root in ("site-packages", "main", "python3.11"):
        if root in parts:
            parts = parts[parts.index(root) + 1:]
            break
    return f"{name} ({'/'.join(parts[-2:])})"


def spy_tables(spy_files: list[tuple[str, str]], top: int = 15) -> tuple[dict, list[str]]:
    """Samples per stage, and per stage its top functions by own and by inclusive samples."""
    samples: collections.Counter = collections.Counter()
    own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, path in spy_files:
        for frames, count in _spy_stacks(path):
            frames = [f for f in frames if not f.startswith("process ")]
            if not frames:
                continue
            stage = _spy_stage(frames, name == "web")
            samples[stage] += count
            own[stage][_function(frames[-1])] += count
            for function in {_function(f) for f in frames}:
                inclusive[stage][function] += count
    lines = []
    for stage in ("reply", "pay", "email"):
        total = samples[stage]
        if not total:
            continue
        # ancestors every sample shares (the worker's loop, the middleware chain) say nothing
        incl = [(f, c) for f, c in inclusive[stage].most_common() if c < 0.9 * total][:top]
        owns = own[stage].most_common(top)
        lines += ["", f"#### {stage}: top functions, % of the stage's samples ({total:,})", "",
                  "| own (leaf) | % | inclusive (below 90 %) | % |", "|---|---|---|---|"]
        for i in range(max(len(owns), len(incl))):
            o = owns[i] if i < len(owns) else ("", 0)
            n = incl[i] if i < len(incl) else ("", 0)
            lines.append(f"| {o[0]} | {o[1] * 100 / total:.1f} | {n[0]} | {n[1] * 100 / total:.1f} |")
    return dict(samples), lines


def report(work: str) -> list[str]:
    """The Markdown breakdown of a measured run (its numbers are in ``work``)."""
    saved = json.loads((Path(work) / "run.json").read_text())
    run, cpu, orders = saved["run"], saved["cpu"], saved["orders"]
    paid = sum(n for status, n in run["statuses"].items() if status in ("DELIVERED", "FULFILLING"))
    per = {"reply": orders, "pay": max(paid, 1), "email": max(run["emails"], 1)}
    queries = _queries(work)
    samples, function_lines = spy_tables(saved["spy_files"]) if saved["spy_files"] else (
        {}, [])
    worker_samples = sum(n for stage, n in samples.items() if stage not in ("reply", "web (gunicorn's loop)"))
    web_samples = samples.get("reply", 0) + samples.get("web (gunicorn's loop)", 0)
    db_seconds = sum(q[1] for q in queries.values()) or 1.0
    postgres = cpu.get("PostgreSQL (whole server)", 0.0)
    machine_total = cpu.get("machine (all CPUs, /proc/stat)", 0.0)
    busy = machine_total / saved["wall"] / (os.cpu_count() or 1) * 100
    lines = [f"# Flash-sale profile — {saved['at']}", "",
             f"- command: `{saved['command']}`", f"- machine: {saved['machine']}; commit {saved['commit']}",
             f"- stack: {run['settings']}",
             (f"- {orders:,} notifies, {paid:,} orders paid and delivered, {run['emails']:,} emails; window (load + "
             f"drain) {saved['wall']:.1f} s, the machine {busy:.0f} % busy"),
             f"- this run: {run['callbacks_per_s']:,.0f} replies/s, orders paid {run['paid_per_s']:,.0f}/s, "
             f"notify → key visible p95 {run['notify_key_ms'][1]:,.0f} ms, notify → email p50/p95 "
             f"{run['notify_email_ms'][0]:,.0f} / {run['notify_email_ms'][1]:,.0f} ms, "
             f"{run['emails_per_s']:,.0f} emails/s"
             + (" (py-spy sampling: slower than an unprofiled run)" if saved["spy_files"] else ""),
             f"- verdict: {saved['verdict'] or 'OK'}", "",
             "## Per order, by stage", "",
             ("| stage | CPU of its process, ms | queries | connections opened | DB time seen by the client, ms "
             "| ≈ PostgreSQL CPU, ms |"), "|---|---|---|---|---|---|"]
    for stage in ("reply", "pay", "email"):
        count, seconds, connections = queries.get(stage, [0, 0.0, 0])
        if stage == "reply":
            process = cpu.get("web", 0.0) * (samples.get("reply", 1) / (web_samples or 1))
        else:
            process = cpu.get("RQ workers", 0.0) * (samples.get(stage, 0) / worker_samples if worker_samples else 0)
        lines.append(f"| {stage} | {process * 1000 / per[stage]:.2f} | {count / per[stage]:.2f} | "
                     f"{connections / per[stage]:.2f} | {seconds * 1000 / per[stage]:.2f} | "
                     f"{postgres * seconds / db_seconds * 1000 / per[stage]:.2f} |")
    lines += ["", ("Per notify (reply), per order paid (pay), per email sent (email). A process's CPU is split "
              "between its stages by py-spy's samples (the workers run both pay and email); PostgreSQL's by the "
              "stages' share of the time their queries took, a rough guide (a new connection's cost is the "
              "server's, not a query's)."), "",
              "## CPU by process (user + system over the window)", "",
              "| process | CPU s | ms per notify | % of the machine's |", "|---|---|---|---|"]
    for name, seconds in cpu.items():
        lines.append(f"| {name} | {seconds:.1f} | {seconds * 1000 / orders:.2f} | "
                     f"{seconds * 100 / machine_total if machine_total else 0:.0f} % |")
    lines += ["", ("PostgreSQL is the whole embedded server: other sessions' databases count too; the machine's "
              "figure includes everything else that ran (other sessions, py-spy).")]
    if samples:
        rate = saved["spy_rate"]
        lines += ["", "## py-spy", "", (f"{rate} Hz, only the thread holding the GIL (Python's work, not its waits on "
                  "PostgreSQL, Redis or SMTP; a niced worker that is preempted while holding the GIL still counts, "
                  "so the samples give the split, the process CPU above the amount)."), "",
                  "| stage | samples |", "|---|---|"]
        lines += [f"| {stage} | {n:,} |" for stage, n in sorted(samples.items(), key=lambda kv: -kv[1])]
        lines += function_lines
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--hook":
        launch(sys.argv[2:])
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import flash_sale
    import stack as stack_module

    parser = flash_sale.arguments()
    parser.add_argument("--py-spy", action="store_true")
    parser.add_argument("--spy-rate", type=int, default=50)
    parser.add_argument("--out", default="/tmp/profile_flash.md")
    parser.add_argument("--report", metavar="DIR", help="write the report of a run measured before (its folder)")
    args = parser.parse_args()
    if args.report:
        work = args.report
    else:
        if args.seconds:
            args.orders = round(args.rate * args.seconds)
        if args.keys is None:
            args.keys = args.orders if args.seconds else 5000
        args.smoke = False
        work = tempfile.mkdtemp(prefix="kamidrop-profile-")
        profile = Profile(py_spy=args.py_spy, rate=args.spy_rate, spy_dir=work)
        run = flash_sale.run_once(args, skip_locked=args.claim != "plain", during=profile,
                                  launcher=[stack_module.PY, str(Path(__file__).resolve()), "--hook", work])
        (Path(work) / "run.json").write_text(json.dumps({
            "run": run, "cpu": profile.cpu, "wall": profile.wall, "orders": args.orders,
            "spy_files": [(name, path) for name, _, path in profile.spies], "spy_rate": args.spy_rate,
            "command": f".venv/bin/python bench/profile_flash.py {' '.join(sys.argv[1:])}",
            "machine": stack_module.machine(), "commit": stack_module.commit(),
            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "verdict": "; ".join(flash_sale.verdict(run, args.keys, args.orders)),
        }, default=str))
    lines = report(work)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {args.out}; raw py-spy stacks and query counts in {work}")


if __name__ == "__main__":
    main()
