"""Runs the production-shaped stack for benchmarks on this machine: gunicorn
with the image's command (Dockerfile's CMD: gthread workers, the redacting
access log), RQ workers, the sweeper loop and a local SMTP sink, on a database
and a Redis db of their own on the embedded servers, with DEBUG off and the
settings' defaults (``DB_CONN_MAX_AGE`` 60, logging at INFO in JSON).

A benchmark deviates from production only by saying so: ``Stack(web_workers=…,
web_worker_class=…, conn_max_age=0, access_log=False)``; ``Stack.deviations``
lists what differs, for the benchmark to print."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shlex
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
        **(extra or {}),
    }


def image_web_command(*, bind: str, workers: int | None = None, worker_class: str | None = None,
                      threads: int | None = None, access_log: bool = True) -> list[str]:
    """The image's gunicorn command (the Dockerfile's last ``CMD exec gunicorn``
    line, its ``${VAR:-default}`` at their defaults), bound to ``bind``; the
    arguments given replace the image's, ``access_log=False`` drops its access log."""
    line = next(line for line in reversed((BASE_DIR / "Dockerfile").read_text().splitlines())
                if line.startswith("CMD exec gunicorn "))
    line = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line.removeprefix("CMD exec "))
    argv = shlex.split(line)
    if worker_class == "sync" and threads is None:
        threads = 1  # gunicorn turns a sync worker with threads into a gthread one
    options = {"--bind": bind, "--workers": workers, "--worker-class": worker_class, "--threads": threads}
    out: list[str] = [PY, "-m", "gunicorn"]
    words = iter(argv[1:])
    for word in words:
        if word in ("--access-logfile", "--logger-class") and not access_log:
            next(words)
            continue
        out.append(word)
        if word in options:
            value = next(words)
            out.append(str(options[word]) if options[word] is not None else value)
    return out


def image_web_defaults() -> dict[str, str]:
    """The image's --workers, --worker-class and --threads."""
    argv = image_web_command(bind="-")
    return {name: argv[argv.index(name) + 1] for name in ("--workers", "--worker-class", "--threads")}


class Stack:
    def __init__(self, *, web_workers: int | None = None, rq_workers: int = 2, smtp_fail_rate: float = 0.0,
                 worker_class: str = "", extra_env: dict | None = None, web_worker_class: str | None = None,
                 web_threads: int | None = None, sweeper: bool = True, name: str = "", worker_nice: int = WORKER_NICE,
                 conn_max_age: int | None = None, access_log: bool = True, launcher: list[str] | None = None):
        """``worker_class``: the RQ worker class (empty: the settings' one);
        ``web_workers``/``web_worker_class``/``web_threads``: gunicorn's (None:
        the image's); ``sweeper=False`` starts no sweeper loop (it applies
        overdue notices and would compete with what is being measured);
        ``name``: see ``bench_env``; ``conn_max_age``: ``DB_CONN_MAX_AGE``
        (None: the settings' default, 60); ``access_log=False``: no gunicorn
        access log and the shop logging at WARNING (no ``shop.request`` line
        per request), as benchmarks ran before issue 22; ``launcher``: the
        interpreter's argv for the web, the workers and the sweeper (default:
        this Python; bench/profile_flash.py puts its query counter there)."""
        self.web_port, self.smtp_port = free_port(), free_port()
        extra = dict(extra_env or {})
        if conn_max_age is not None:
            extra["DB_CONN_MAX_AGE"] = str(conn_max_age)
        if not access_log:
            extra.setdefault("LOG_LEVEL", "WARNING")
        self.env = bench_env(smtp_port=self.smtp_port, web_port=self.web_port, extra=extra, name=name)
        self.name = name or "bench"
        self.access_log = access_log
        self.launcher = launcher or [PY]
        self.web_command = image_web_command(bind=f"127.0.0.1:{self.web_port}", workers=web_workers,
                                             worker_class=web_worker_class, threads=web_threads,
                                             access_log=access_log)
        self.web_workers, self.rq_workers = int(self._web_option("--workers")), rq_workers
        self.smtp_fail_rate = smtp_fail_rate
        self.worker_class = worker_class
        self.web_worker_class, self.web_threads = self._web_option("--worker-class"), int(self._web_option("--threads"))
        self.sweeper = sweeper
        self.worker_nice = worker_nice
        self.sink_log = f"/tmp/kamidrop-sink-{os.getpid()}-{self.smtp_port}.jsonl"
        self.processes: dict[str, subprocess.Popen] = {}

    def _web_option(self, name: str) -> str:
        return self.web_command[self.web_command.index(name) + 1]

    def deviations(self) -> list[str]:
        """How this stack differs from the production defaults (the image's
        command, the settings' defaults, compose's CPU weights)."""
        image = image_web_defaults()
        out = [f"gunicorn {name} {self._web_option(name)} (image: {value})" for name, value in image.items()
               if self._web_option(name) != value]
        if "DB_CONN_MAX_AGE" in self.env:
            out.append(f"DB_CONN_MAX_AGE={self.env['DB_CONN_MAX_AGE']} (settings' default: 60)")
        if not self.access_log:
            out.append("no access log (gunicorn's off, LOG_LEVEL=WARNING)")
        elif self.env.get("LOG_LEVEL", "INFO") != "INFO":
            out.append(f"LOG_LEVEL={self.env['LOG_LEVEL']} (default INFO)")
        if self.worker_nice != WORKER_NICE and self.rq_workers:
            out.append(f"RQ workers at nice {self.worker_nice} (compose: cpu_shares "
                       f"{NICE_WEIGHT[WORKER_NICE]}, nice {WORKER_NICE})")
        return out

    def settings_text(self) -> str:
        """One line naming the web command's shape, DB_CONN_MAX_AGE, logging and the CPU weights."""
        web = f"gunicorn {self.web_workers} {self.web_worker_class}"
        if self.web_worker_class == "gthread":
            web += f" × {self.web_threads}"
        log = ("access log on (gunicorn's RedactingLogger + shop.request at INFO)" if self.access_log
               else "no access log")
        weights = (f"RQ workers at nice {self.worker_nice} (their session's CPU weight)" if self.worker_nice
                   else "equal CPU weights")
        deviations = self.deviations()
        return (f"{web}, DB_CONN_MAX_AGE={self.env.get('DB_CONN_MAX_AGE', '60')}, {log}, {weights}; "
                + ("production defaults" if not deviations else "deviating from production: " + "; ".join(deviations)))

    def manage(self, *args, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=check,
                              capture_output=True, text=True)

    def manage_script(self, script: str, *args) -> str:
        result = subprocess.run([PY, script, *args], cwd=BASE_DIR, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{script} failed:\n{result.stderr}")
        return result.stdout

    def start_process(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        # Logs are written as a container's are (to a file here): gunicorn's
        # access log goes to stdout, the shop's lines to stderr.
        log = open(self.log_path(name), "a")
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, start_new_session=True,
                                   stdout=log, stderr=log, **kwargs)
        self.processes[name] = process
        return process

    def log_path(self, name: str) -> str:
        return f"/tmp/kamidrop-bench-{self.name}-{name}.log"

    def start_worker(self, name: str) -> subprocess.Popen:
        argv = [*self.launcher, "manage.py", "rqworker", "delivery", "payments", "default", "--with-scheduler"]
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
        for old in Path("/tmp").glob(f"kamidrop-bench-{self.name}-*.log"):
            old.unlink()
        self.start_process("smtp", [PY, "bench/smtp_sink.py", "--port", str(self.smtp_port), "--log", self.sink_log,
                                    "--fail-rate", str(self.smtp_fail_rate)])
        self.start_process("web", [*self.launcher, *self.web_command[1:]])
        for n in range(self.rq_workers):
            self.start_worker(f"worker{n}")
        if self.sweeper:
            self.start_process("sweeper", [*self.launcher, "manage.py", "sweep", "--every",
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
                raise RuntimeError(f"the stack did not come up; see {self.log_path('web')}")
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
