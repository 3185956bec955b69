"""Redis through Sentinel (REDIS_SENTINELS): the queues, the cache and its
rate limits, and /healthz reach the master a real Sentinel names (Debian's
redis-server and redis-sentinel on loopback), and after the master dies new
connections reach the one the Sentinel promoted, with no restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import pytest
import redis
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import RequestFactory
from django_ratelimit.core import is_ratelimited
from redis.sentinel import Sentinel

from shop.project.redis_config import redis_settings, redis_stores
from tests.conftest import free_port

BASE_DIR = Path(__file__).resolve().parent.parent.parent
MASTER_NAME = "kamidrop-test"
MASTER_PASSWORD = "master-secret"
SENTINEL_PASSWORD = "sentinel-secret"


def sentinel_echo(value: str) -> str:
    """The job the tests enqueue (a worker process imports it from here)."""
    return f"done {value}"


# --- the settings -----------------------------------------------------------------


def test_sentinel_settings_name_the_master_for_queues_and_cache(monkeypatch):
    # given
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.1:26379, [::1]:26380")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "shop")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sp")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@shop/2")
    # when
    values = redis_settings(service_url=lambda: pytest.fail("no embedded Redis with Sentinel set"))
    # then
    sentinels = [("10.0.0.1", 26379), ("::1", 26380)]
    assert values["REDIS_SENTINELS"] == sentinels
    for name, config in values["RQ_QUEUES"].items():
        assert "URL" not in config, name
        assert {k: config[k] for k in ("SENTINELS", "MASTER_NAME", "DB", "PASSWORD")} == {
            "SENTINELS": sentinels, "MASTER_NAME": "shop", "DB": 2, "PASSWORD": "pw"}, name
        assert config["SENTINEL_KWARGS"]["password"] == "sp"
    options = values["CACHES"]["default"]["OPTIONS"]
    assert options["pool_class"] == "shop.project.redis_sentinel.SentinelMasterPool"
    assert (options["sentinels"], options["service_name"]) == (sentinels, "shop")


def test_sentinels_without_a_master_name_are_refused(monkeypatch):
    # given
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.1:26379")
    monkeypatch.delenv("REDIS_SENTINEL_MASTER", raising=False)
    # when / then
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINEL_MASTER must be set"):
        redis_settings(service_url=lambda: "redis://127.0.0.1:1/0")


# --- a real Sentinel --------------------------------------------------------------


def _ensure_debian_packages() -> None:
    if shutil.which("redis-server") and shutil.which("redis-sentinel"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "redis-server",
                    "redis-sentinel"], check=True, env=env, stdout=subprocess.DEVNULL)


def _wait(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except redis.RedisError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """A master, its replica and one sentinel, each a process on a loopback port."""

    def __init__(self, root: Path):
        self.root = root
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.processes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, command: list[str]) -> None:
        log = (self.root / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.root),
                  "--requirepass", MASTER_PASSWORD, "--masterauth", MASTER_PASSWORD]
        self._start("master", ["redis-server", "--port", str(self.ports["master"]), *common])
        self._start("replica", ["redis-server", "--port", str(self.ports["replica"]), *common,
                                "--replicaof", "127.0.0.1", str(self.ports["master"])])
        conf = self.root / "sentinel.conf"  # the sentinel rewrites it: a file of its own
        conf.write_text("\n".join([
            f"port {self.ports['sentinel']}", "bind 127.0.0.1", f"dir {self.root}",
            f"requirepass {SENTINEL_PASSWORD}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['master']} 1",
            f"sentinel auth-pass {MASTER_NAME} {MASTER_PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
            f"sentinel failover-timeout {MASTER_NAME} 5000", "",
        ]))
        self._start("sentinel", ["redis-sentinel", str(conf)])
        _wait(lambda: self.server("replica").info("replication")["master_link_status"] == "up",
              timeout=20, what="the replica in sync")
        _wait(lambda: any(r["port"] == self.ports["replica"] and not r["is_sdown"]
                          for r in self.sentinel().sentinel_slaves(MASTER_NAME)),
              timeout=20, what="the sentinel to see the replica")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def server(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], password=MASTER_PASSWORD, socket_timeout=2)

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.ports["sentinel"], password=SENTINEL_PASSWORD, socket_timeout=2)

    def master_port(self) -> int:
        """The master's port as a client finds it: a master the sentinel names and does not think down."""
        sentinel = Sentinel([("127.0.0.1", self.ports["sentinel"])],
                            sentinel_kwargs={"password": SENTINEL_PASSWORD, "socket_timeout": 2})
        return int(sentinel.discover_master(MASTER_NAME)[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _ensure_debian_packages()
    cluster = Cluster(tmp_path_factory.mktemp("sentinel"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def through_sentinel(cluster, settings, monkeypatch):
    """The settings as REDIS_SENTINELS / REDIS_SENTINEL_MASTER would make them."""
    url = f"redis://:{MASTER_PASSWORD}@{MASTER_NAME}/0"
    sentinels = [("127.0.0.1", cluster.ports["sentinel"])]
    stores = redis_stores(url=url, sentinels=sentinels, master=MASTER_NAME, sentinel_password=SENTINEL_PASSWORD,
                          connect_timeout=settings.REDIS_CONNECT_TIMEOUT)
    settings.REDIS_URL, settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER = url, sentinels, MASTER_NAME
    settings.REDIS_SENTINEL_PASSWORD = SENTINEL_PASSWORD
    settings.CACHES, settings.RQ_QUEUES = stores["CACHES"], stores["RQ_QUEUES"]
    for name, config in stores["RQ_QUEUES"].items():  # django-rq read RQ_QUEUES once, at import
        monkeypatch.setitem(django_rq.settings.QUEUES, name, config)
    return cluster


def _worker_env(cluster: Cluster) -> dict:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    return {**env, "DJANGO_SETTINGS_MODULE": "shop.project.settings", "DEBUG": "1",
            "DATABASE_URL": f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
            "REDIS_SENTINELS": f"127.0.0.1:{cluster.ports['sentinel']}", "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD, "REDIS_URL": f"redis://:{MASTER_PASSWORD}@{MASTER_NAME}/0"}


def _run_worker(cluster: Cluster) -> None:
    """`manage.py rqworker --burst` in a process of its own, configured only by the environment."""
    result = subprocess.run([sys.executable, "manage.py", "rqworker", "default", "--burst"], check=False, cwd=BASE_DIR,
                            env=_worker_env(cluster), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _rate_limited(times: int) -> list[bool]:
    request = RequestFactory().get("/")
    return [is_ratelimited(request, group="sentinel-test", key="ip", rate="2/m", increment=True)
            for _ in range(times)]


@pytest.mark.django_db
def test_jobs_counters_and_health_go_through_the_sentinels_master(through_sentinel, client):
    cluster = through_sentinel
    master = cluster.server("master")
    # when: a job is enqueued here and run by a worker that knows only the sentinel
    job = django_rq.get_queue("default").enqueue("tests.ops.test_redis_sentinel.sentinel_echo", "before")
    _run_worker(cluster)
    # and the cache and a rate limit are used
    cache.set("sentinel-probe", "seen")
    limited = _rate_limited(3)
    health = client.get("/healthz").json()
    # then: all of it on the master
    job.refresh()
    assert (job.get_status(), job.return_value()) == ("finished", "done before")
    assert master.exists(f"rq:job:{job.id}") == 1
    assert cache.get("sentinel-probe") == "seen"
    assert master.get("kamidrop:1:sentinel-probe") is not None
    assert limited == [False, False, True]
    assert (health["redis"], health["queues"]["default"]) == ("ok", 0)


@pytest.mark.django_db
def test_after_the_master_dies_new_connections_reach_the_promoted_replica(through_sentinel, client):
    cluster = through_sentinel
    old_port, replica_port = cluster.master_port(), cluster.ports["replica"]
    # given: this process's pooled clients hold connections to the master
    django_rq.get_queue("default").enqueue("tests.ops.test_redis_sentinel.sentinel_echo", "warm-up")
    cache.set("sentinel-probe", "old")
    assert old_port == cluster.ports["master"]
    # when: the master dies and the sentinel promotes the replica
    cluster.processes["master"].send_signal(signal.SIGKILL)
    cluster.processes["master"].wait(timeout=10)
    _wait(lambda: cluster.master_port() == replica_port, timeout=15, what="the failover")
    # and the same clients are used again, and a worker is started afresh
    job = django_rq.get_queue("default").enqueue("tests.ops.test_redis_sentinel.sentinel_echo", "after")
    cache.set("sentinel-probe", "new")
    limited = _rate_limited(3)
    _run_worker(cluster)
    health = client.get("/healthz").json()
    # then: everything went to the promoted replica, now the master
    promoted = cluster.server("replica")
    assert promoted.role()[0] == b"master"
    job.refresh()
    assert (job.get_status(), job.return_value()) == ("finished", "done after")
    assert promoted.exists(f"rq:job:{job.id}") == 1
    assert cache.get("sentinel-probe") == "new"
    assert promoted.get("kamidrop:1:sentinel-probe") is not None
    assert limited[-1] is True
    assert health["redis"] == "ok"
