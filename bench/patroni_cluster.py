"""A PostgreSQL HA cluster on loopback from Debian's packages: one etcd and two
Patroni nodes (a primary and a synchronous standby) in a temporary directory,
on free ports. Used by bench/failover.py and its pytest smoke.

    with PatroniCluster() as cluster:
        dsn = cluster.database_create(name="kamidrop", user="kamidrop")
        ...
        cluster.node_kill(cluster.leader())

Patroni refuses to run as root: as root the cluster runs as the system user
``postgres`` (Debian's PostgreSQL packages create it). Everything the cluster
started is SIGKILLed and its directory removed on leaving the ``with``, also
after an error.

Why these settings:

- ``synchronous_mode: true``: a commit returns only once the standby has the
  WAL on disk, and Patroni promotes only a standby that was synchronous. So a
  notify the shop answered ``success`` (its INSERT committed) is on the node
  that takes over: this is what "0 acknowledged payments lost" rests on.
- ``synchronous_mode_strict: false``: with two nodes, strict mode makes the
  failover useless. The promoted standby has no standby of its own until the
  dead node comes back, so in strict mode every commit on it waits, and the
  shop answers no notify at all. Not strict, a lone primary commits on its own
  disk, and Patroni still never promotes a node that was not synchronous (it
  would have missed commits). The price: while one node is down, the
  payments of that window live on one disk. A third node makes strict mode
  affordable (``--strict``).
- ``ttl`` 10 s, ``loop_wait`` 2 s, ``retry_timeout`` 4 s (loop_wait +
  2 × retry_timeout ≤ ttl, as Patroni requires): the leader key of a dead
  primary expires within 10 s of its last renewal, and the standby acts at its
  next loop: a takeover of about 10 s, inside the 15 s the shop promises.
  Patroni's defaults (30/10/10) would take 30–40 s.
- ``track_commit_timestamp``: the commit time of every transaction, replicated
  with it, so that the takeover is measured on the new primary from commits
  (last one replicated from the old primary → first one on the new one).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Self

import psycopg

PACKAGES = ["patroni", "etcd-server"]
SCOPE = "kamidrop"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> str | None:
    """The newest Debian PostgreSQL server's binaries (/usr/lib/postgresql/NN/bin)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found = [d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return str(max(found, key=lambda d: int(d.parent.name))) if found else None


def packages_ensure() -> str:
    """Install Patroni, etcd and a PostgreSQL server from Debian when missing;
    return the server's bin directory."""
    wanted = [name for name, binary in (("patroni", "patroni"), ("etcd-server", "etcd")) if not shutil.which(binary)]
    if postgres_bin_dir() is None:
        wanted.append("postgresql")
    if wanted:
        if os.geteuid() != 0:
            raise RuntimeError(f"missing Debian packages: as root, apt-get install {' '.join(wanted)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *wanted], check=True, env=env, stdout=subprocess.DEVNULL)
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not shutil.which("patroni") or not shutil.which("etcd"):
        raise RuntimeError("patroni, etcd or a PostgreSQL server is still missing after apt-get install")
    return bin_dir


def _service_user() -> pwd.struct_passwd | None:
    """The user Patroni runs as: ``postgres`` when we are root (Patroni refuses
    root), else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--home-dir", "/var/lib/postgresql", "--shell", "/bin/bash",
                        "postgres"], check=True)
        return pwd.getpwnam("postgres")


class Node:
    def __init__(self, name: str, root: Path):
        self.name = name
        self.dir = root / name
        self.pg_port, self.api_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


class PatroniCluster:
    def __init__(self, *, nodes: int = 2, strict: bool = False, ttl: int = TTL, loop_wait: int = LOOP_WAIT,
                 retry_timeout: int = RETRY_TIMEOUT, log=print):
        self.bin_dir = packages_ensure()
        self.user = _service_user()
        self.root = Path(tempfile.mkdtemp(prefix="kamidrop-patroni-"))
        self.root.chmod(0o755)
        self.strict = strict
        self.timing = {"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry_timeout}
        self.nodes = [Node(f"node{i + 1}", self.root) for i in range(nodes)]
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.superuser_password = secrets.token_hex(12)
        self.etcd: subprocess.Popen | None = None
        self.log = log
        self.killed: list[str] = []

    # --- processes -------------------------------------------------------------

    def _popen(self, argv: list[str], log_name: str) -> subprocess.Popen:
        kwargs = {}
        if self.user:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(self.root)}
        with open(self.root / f"{log_name}.log", "ab") as out:  # the child keeps its own copy
            return subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True, cwd=self.root, env=env,
                                    **kwargs)

    def _chown(self, path: Path) -> None:
        if self.user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _config(self, node: Node) -> dict:
        auth = {"username": "postgres", "password": self.superuser_password}
        return {
            "scope": SCOPE,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{node.api_port}", "connect_address": f"127.0.0.1:{node.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    **self.timing,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": self.strict,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "track_commit_timestamp": "on",
                            "wal_log_hints": "on",
                            "max_connections": 200,
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "128MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": self.bin_dir,
                "pgpass": str(node.dir / "pgpass"),
                "authentication": {
                    "superuser": auth,
                    "replication": {"username": "replicator", "password": self.superuser_password},
                    "rewind": {"username": "rewinder", "password": self.superuser_password},
                },
                "parameters": {"unix_socket_directories": str(node.dir), "logging_collector": "on",
                               "log_directory": str(node.dir / "log"), "log_min_messages": "warning"},
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
            "tags": {},
        }

    def node_start(self, node: Node) -> None:
        node.dir.mkdir(exist_ok=True)
        self._chown(node.dir)
        config = node.dir / "patroni.yml"
        config.write_text(json.dumps(self._config(node), indent=1))  # YAML is a superset of JSON
        self._chown(config)
        node.process = self._popen(["patroni", str(config)], f"patroni-{node.name}")

    def __enter__(self) -> Self:
        try:
            etcd_dir = self.root / "etcd"
            etcd_dir.mkdir()
            self._chown(etcd_dir)
            client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
            self.etcd = self._popen(["etcd", "--name", "etcd1", "--data-dir", str(etcd_dir / "data"),
                                     "--listen-client-urls", client, "--advertise-client-urls", client,
                                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", f"etcd1={peer}", "--log-level", "warn"], "etcd")
            self._wait(lambda: self._etcd_healthy(), 30, "etcd did not come up")
            self.node_start(self.nodes[0])
            self._wait(lambda: self.leader() is not None, 90, "no leader was elected")
            for node in self.nodes[1:]:
                self.node_start(node)
            self._wait(self._replicated, 120, "the standby did not become synchronous")
            return self
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """SIGKILL everything this cluster started (the nodes' postgres too,
        which Patroni starts in a session of its own), then remove its directory."""
        for node in self.nodes:
            self._node_pids_kill(node)
        if self.etcd and self.etcd.poll() is None:
            os.killpg(self.etcd.pid, signal.SIGKILL)
            self.etcd.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def _node_pids(self, node: Node) -> list[int]:
        """The node's Patroni and postgres processes: the postmaster and its children."""
        import psutil

        pids = []
        if node.process and node.process.poll() is None:
            pids.append(node.process.pid)
        postmaster = node.postmaster_pid()
        if postmaster:
            try:
                proc = psutil.Process(postmaster)
                if str(node.data_dir) in " ".join(proc.cmdline()):
                    pids += [postmaster, *(child.pid for child in proc.children(recursive=True))]
            except psutil.Error:
                pass
        return pids

    def _node_pids_kill(self, node: Node) -> list[int]:
        pids = self._node_pids(node)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if node.process:
            node.process.wait(timeout=30)
        return pids

    def node_kill(self, node: Node) -> float:
        """The machine under ``node`` dies: Patroni, the postmaster and every
        postgres child are frozen (SIGSTOP, all of them, so none commits
        after another died), then SIGKILLed. Returns the moment all were
        frozen (``time.time()``): no commit on this node is later."""
        pids = self._node_pids(node)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        frozen_at = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        node.process.wait(timeout=30)
        self.killed.append(node.name)
        self.log(f"killed {node.name}: {len(pids)} processes (Patroni, the postmaster and its children)")
        return frozen_at

    # --- state ---------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as r:
                return json.load(r).get("health") == "true"
        except OSError:
            return False

    def members(self) -> list[dict]:
        """Patroni's view of the cluster (GET /cluster on any live node)."""
        for node in self.nodes:
            if node.name in self.killed:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{node.api_port}/cluster", timeout=2) as r:
                    return json.load(r).get("members", [])
            except OSError:
                continue
        return []

    def leader(self) -> Node | None:
        names = [m["name"] for m in self.members() if m.get("role") == "leader" and m.get("state") == "running"]
        return next((n for n in self.nodes if n.name in names), None)

    def _replicated(self) -> bool:
        members = self.members()
        return (any(m.get("role") == "leader" for m in members)
                and sum(m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming")
                        for m in members) == len(self.nodes) - 1)

    def _wait(self, ready, seconds: float, message: str) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{message}; logs in {self.root}")
            for name, process in [("etcd", self.etcd), *((n.name, n.process) for n in self.nodes)]:
                if process is not None and process.poll() is not None and name not in self.killed:
                    log = self.root / (f"patroni-{name}.log" if name != "etcd" else "etcd.log")
                    raise RuntimeError(f"{name} exited ({process.returncode}): {log.read_text()[-2000:]}")
            time.sleep(0.3)

    # --- the shop's database ---------------------------------------------------

    def superuser_dsn(self, node: Node, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{self.superuser_password}@127.0.0.1:{node.pg_port}/{dbname}"

    def database_create(self, *, name: str, user: str) -> str:
        """A login role and a database it owns, on the leader; returns the
        multi-host DSN the apps use: every node, the one that accepts writes wins."""
        password = secrets.token_hex(12)
        with psycopg.connect(self.superuser_dsn(self.leader()), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            conn.execute(f"CREATE DATABASE {name} OWNER {user}")
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        return f"postgres://{user}:{password}@{hosts}/{name}?target_session_attrs=read-write"

    def describe(self) -> str:
        bits = [f"patroni {_version(['patroni', '--version'])}", f"etcd {_version(['etcd', '--version'])}",
                f"PostgreSQL {Path(self.bin_dir).parent.name}"]
        timing = ", ".join(f"{k} {v} s" for k, v in self.timing.items())
        return (f"{' + '.join(bits)}; {len(self.nodes)} nodes, synchronous_mode on, "
                f"synchronous_mode_strict {'on' if self.strict else 'off'}; {timing}")


def _version(argv: list[str]) -> str:
    out = subprocess.run(argv, check=False, capture_output=True, text=True).stdout.split()
    return next((word for word in out if word[:1].isdigit()), "?")
