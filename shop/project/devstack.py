"""``make run``: the whole demo stack in the foreground.

Starts the embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are
set, migrates, loads the demo shop, then runs the web server, one RQ worker
(with the scheduler, so retries fire) and the sweeper loop. Ctrl-C or SIGTERM stops everything this
command started — the web server, the worker, and the embedded servers if it
was the one that started them — and so does the web server dying; a worker
or the sweeper that dies is started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from shop.project import embedded

MANAGE = [sys.executable, "manage.py"]


def _log(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def _start(name: str, argv: list[str], env: dict) -> subprocess.Popen:
    # Each child leads its own process group, so stopping it also stops
    # whatever it forked (runserver's reloader, the worker's job horse).
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    _log(f"{name} started (pid {process.pid})")
    return process


def _stop(children: dict[str, subprocess.Popen]) -> None:
    for name, process in children.items():
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for name, process in children.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _log(f"{name} stopped")


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    port = env.setdefault("PORT", "8000")
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    children: dict[str, subprocess.Popen] = {}
    try:
        started_at = time.monotonic()
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = embedded.postgres_ensure()
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = embedded.redis_ensure()
        _log(f"embedded servers: {', '.join(embedded.started) or 'already running or external'}")
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v", "0"], env=env, check=True)
        subprocess.run([*MANAGE, "demo"], env=env, check=True)
        _log(f"set-up took {time.monotonic() - started_at:.1f}s")
        if stop_requested:
            return 0
        children["web"] = _start("web", [*MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"], env)
        children["worker"] = _start(
            "worker", [*MANAGE, "rqworker", "delivery", "payments", "default", "--with-scheduler"], env
        )
        # The sweeper reads the database, so it keeps healing when Redis or the worker is down.
        children["sweeper"] = _start("sweeper", [*MANAGE, "sweep", "--every", "60"], env)
        _log(f"shop on http://127.0.0.1:{port}/  admin on http://127.0.0.1:{port}/admin/  (Ctrl-C stops)")
        argv = {name: process.args for name, process in children.items()}
        while not stop_requested:
            for name, process in list(children.items()):
                if process.poll() is None:
                    continue
                if name == "web":
                    _log(f"web exited with {process.returncode}; stopping")
                    stop_requested = True
                else:  # a worker or the sweeper died (Redis blip, OOM): start it again, as compose would
                    _log(f"{name} exited with {process.returncode}; restarting it")
                    time.sleep(1)
                    children[name] = _start(name, argv[name], env)
            time.sleep(0.2)
        return 0
    except subprocess.CalledProcessError as exc:
        _log(f"set-up failed: {' '.join(map(str, exc.cmd))} exited {exc.returncode}")
        return 1
    finally:
        _stop(children)
        stopped = embedded.stop_started()
        if stopped:
            _log(f"stopped embedded {', '.join(stopped)}")


if __name__ == "__main__":
    sys.exit(main())
