"""Runs the production-shaped stack for benchmarks on this machine: gunicorn
(several workers: sync, or gthread with ``web_threads``), RQ workers, the
sweeper loop and a local SMTP sink, on a database and a Redis db of their own
on the embedded servers, with DEBUG off."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
PY = sys.executable
BENCH_DB = "kamidrop_bench"
BENCH_REDIS_DB = 0
BENCH_REDIS_ROOT = Path("/tmp/kamidrop-bench")
EPAY_PID, EPAY_KEY = "1001", "bench-epay-key"
# The workers' CPU weight, as docker-compose.yml gives it (cpu_shares): when the
# two cores are short, the web answers the gateway first and the workers catch
# up; when the web is idle the workers have all of it. The kernel's weight of
# nice 10 is 110, of nice 0 1024 (sched_prio_to_weight).
WORKER_NICE = 10
NICE_WEIGHT = {0: 1024, 5: 335, 10: 110, 15: 36, 19: 15}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One set of secrets per benchmark process: every stack it starts can read the
# keys the previous set-up sealed.
_SECRETS = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "KEY_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "KEY_FINGERPRINT_PEPPER": secrets.token_urlsafe(16),
}


def bench_env(*, smtp_port: int, web_port: int, extra: dict | None = None, name: str = "") -> dict:
    """Fresh database and Redis db; production-like settings (DEBUG off).
    ``name``: a database and Redis server of the benchmark's own, so that two
    benchmarks run at once do not drop each other's data."""
    database = f"{BENCH_DB}_{name}" if name else BENCH_DB
    redis_root = BENCH_REDIS_ROOT / name if name else BENCH_REDIS_ROOT
    import psycopg
    import redis

    from shop.project import embedded

    base = embedded.postgres_ensure()
    with psycopg.connect(base.replace(f"/{embedded.DATABASE_NAME}?", "/postgres?"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    # A Redis of its own: the chaos run stops it, and nothing else may notice.
    redis_url = f"{embedded.redis_ensure(root=redis_root)}?db={BENCH_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.project.settings",
        "DEBUG": "0",
        **_SECRETS,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_URL": f"http://127.0.0.1:{web_port}",
        "DATABASE_URL": base.replace(f"/{embedded.DATABASE_NAME}?", f"/{database}?"),
        "REDIS_URL": redis_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "EPAY_PID": EPAY_PID, "EPAY_KEY": EPAY_KEY, "EPAY_GATEWAY": "http://127.0.0.1:1/submit.php",
        # Differs from production (query before credit is on by default for
        # EPay): this stack has no gateway to ask. Measuring with a fake
        # gateway's api.php is #22's.
        "EPAY_QUERY_BEFORE_CREDIT": "0",
        "SANDBOX_ENABLED": "0",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "60",
        **(extra or {}),
    }


class Stack:
    def __init__(self, *, web_workers: int = 4, rq_workers: int = 2, smtp_fail_rate: float = 0.0,
                 worker_class: str = "", extra_env: dict | None = None, web_worker_class: str = "sync",
                 web_threads: int = 1, sweeper: bool = True, name: str = "", worker_nice: int = 0):
        """``worker_class``: the RQ worker class (empty: the settings' one);
        ``web_worker_class``/``web_threads``: gunicorn's; ``sweeper=False``
        starts no sweeper loop (it applies overdue notices and would compete
        with what is being measured); ``name``: see ``bench_env``."""
        self.web_port, self.smtp_port = free_port(), free_port()
        self.env = bench_env(smtp_port=self.smtp_port, web_port=self.web_port, extra=extra_env, name=name)
        self.web_workers, self.rq_workers = web_workers, rq_workers
        self.smtp_fail_rate = smtp_fail_rate
        self.worker_class = worker_class
        self.web_worker_class, self.web_threads = web_worker_class, web_threads
        self.sweeper = sweeper
        self.worker_nice = worker_nice
        self.sink_log = f"/tmp/kamidrop-sink-{os.getpid()}-{self.smtp_port}.jsonl"
        self.processes: dict[str, subprocess.Popen] = {}

    def manage(self, *args, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=check,
                              capture_output=True, text=True)

    def manage_script(self, script: str, *args) -> str:
        result = subprocess.run([PY, script, *args], cwd=BASE_DIR, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{script} failed:\n{result.stderr}")
        return result.stdout

    def start_process(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=open(f"/tmp/kamidrop-bench-{name}.log", "a"),
                                   **kwargs)
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> subprocess.Popen:
        argv = [PY, "manage.py", "rqworker", "delivery", "payments", "default", "--with-scheduler"]
        if self.worker_class:
            argv += ["--worker-class", self.worker_class]
        if self.worker_nice:
            argv = ["nice", "-n", str(self.worker_nice), *argv]
        process = self.start_process(name, argv)
        autogroup = Path(f"/proc/{process.pid}/autogroup")
        if self.worker_nice and autogroup.exists():
            # Each process here runs in a session of its own, as each compose
            # service runs in a cgroup of its own; with autogroup the kernel
            # shares the CPU between sessions, so ``nice`` alone changes nothing
            # against the web's session: the session's weight does.
            autogroup.write_text(str(self.worker_nice))
        return process

    def workers_revive(self) -> int:
        """Restart workers that exited (as compose's restart policy would); return how many."""
        revived = 0
        for name in [n for n, p in self.processes.items() if n.startswith("worker") and p.poll() is not None]:
            self.processes.pop(name)
            self.start_worker(name)
            revived += 1
        return revived

    def __enter__(self) -> "Stack":
        self.manage("migrate", "-v", "0")
        open(self.sink_log, "w").close()
        self.start_process("smtp", [PY, "bench/smtp_sink.py", "--port", str(self.smtp_port), "--log", self.sink_log,
                                    "--fail-rate", str(self.smtp_fail_rate)])
        self.start_process("web", [PY, "-m", "gunicorn", "shop.project.wsgi:application", "--workers",
                                   str(self.web_workers), "--worker-class", self.web_worker_class,
                                   "--threads", str(self.web_threads), "--bind", f"127.0.0.1:{self.web_port}",
                                   "--backlog", "2048", "--timeout", "60"])
        for n in range(self.rq_workers):
            self.start_worker(f"worker{n}")
        if self.sweeper:
            self.start_process("sweeper", [PY, "manage.py", "sweep", "--every",
                                           self.env.get("SWEEP_INTERVAL_SECONDS", "60")])
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not come up; see /tmp/kamidrop-bench-web.log")
            time.sleep(0.2)
        return self

    def stop(self, name: str, sig=signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def __exit__(self, *exc) -> None:
        for name in list(self.processes):
            self.stop(name)

    def rss_mb(self, name: str) -> float:
        """Resident memory of a process group (the process and its children), in MB."""
        import psutil

        root = psutil.Process(self.processes[name].pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 1e6

    def sink_arrivals(self) -> list[dict]:
        import json

        return [json.loads(line) for line in open(self.sink_log) if line.strip()]


def machine() -> str:
    import platform

    mem_kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()}"


def commit() -> str:
    """The commit, and whether the working tree differs from it (the figures
    are those of the code that ran)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True,
                          text=True).stdout.strip()
    changed = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                             cwd=BASE_DIR, capture_output=True, text=True).stdout.strip()
    return head + (" with uncommitted changes" if changed else "")


def results_report(lines: list[str], *, record: bool = True) -> None:
    """Print a run's section and (with ``record``) append it to bench/RESULTS.md."""
    text = "\n".join(lines)
    if record:
        with open(BASE_DIR / "bench" / "RESULTS.md", "a") as fh:
            fh.write(text + "\n")
    print(text)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]
