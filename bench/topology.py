"""docker-compose.yml's topology on this machine, from Debian's packages, and real
traffic through it.

    .venv/bin/python bench/topology.py [--checkouts 12] [--web-workers 1] [--record]

Runs HAProxy with the compose file's configuration (deploy/haproxy/haproxy.cfg;
the web servers on loopback instead of Docker's DNS) in front of two gunicorn
instances (the image's command, bench/stack.py), PgBouncer in transaction mode
(as compose configures it) in front of the embedded PostgreSQL, two RQ
workers and an SMTP sink; the apps run as compose runs them (``DB_POOLER=
transaction``, ``TRUSTED_PROXIES`` the balancer's address, migrations straight
to PostgreSQL). Then, through HAProxy:

- checkouts (POST /api/v1/orders), each buyer from an address of its own
  (127.0.0.N: Linux routes all of 127/8 to loopback) and each writing a forged
  X-Forwarded-For: every order must carry its buyer's real address, the one
  HAProxy appended, never the forged one;
- a signed EPay notify pays one order: answered ``success``, its key shown
  by the API and emailed;
- ``manage.py audit`` clean; both gunicorns served checkouts; PgBouncer's
  counters show the apps' transactions shared fewer server connections.

Installs haproxy and pgbouncer with apt-get when they are missing.
tests/test_topology.py runs it.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import BASE_DIR, BENCH_REDIS_ROOT, PY, Stack, commit, free_port, image_web_command, machine, results_report

HAPROXY_DIR = BASE_DIR / "deploy" / "haproxy"
# What docker-compose.yml's pgbouncer service sets (tests/test_deploy_files.py
# holds the two to each other); the pool is smaller here, to show the sharing.
PGBOUNCER = {"pool_mode": "transaction", "auth_type": "scram-sha-256", "max_client_conn": "1000"}
PGBOUNCER_POOL_SIZE = 4
SLUG = "hot"


def debian_packages_ensure(commands: dict[str, str]) -> None:
    """``{command: package}``: apt-get install the packages whose command is missing."""
    missing = sorted({package for command, package in commands.items()
                      if not shutil.which(command) and not Path("/usr/sbin", command).exists()})
    if missing:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                       + " ".join(missing), shell=True, check=True, capture_output=True)


def binary(command: str) -> str:
    return shutil.which(command) or str(Path("/usr/sbin", command))


def port_wait(port: int, *, process, log: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}; see {log}") from None
            time.sleep(0.1)


class Topology(Stack):
    """HAProxy → ``webs`` gunicorns → PgBouncer (transaction mode) → the embedded
    PostgreSQL, and ``rq_workers`` RQ workers behind the same PgBouncer."""

    def __init__(self, *, webs: int = 2, web_workers: int = 1, rq_workers: int = 2, name: str = "topology"):
        debian_packages_ensure({"haproxy": "haproxy", "pgbouncer": "pgbouncer"})
        super().__init__(web_workers=web_workers, rq_workers=rq_workers, sweeper=False, name=name,
                         extra_env={"TRUSTED_PROXIES": "127.0.0.1"})
        self.lb_port, self.pgbouncer_port = free_port(), free_port()
        self.web_ports = [free_port() for _ in range(webs)]
        self.dir = Path(tempfile.mkdtemp(prefix=f"kamidrop-{name}-"))
        self.direct_url = self.env["DATABASE_URL"]  # the embedded server's socket
        direct = urlsplit(self.direct_url)
        self.database = direct.path.lstrip("/")
        self.user = direct.username or "postgres"
        self.password = secrets.token_urlsafe(16)
        self.socket_dir = dict(p.split("=", 1) for p in direct.query.split("&"))["host"]
        self.env.update(
            DATABASE_URL=self.pooled_url(self.database), DB_POOLER="transaction",
            SITE_URL=f"http://127.0.0.1:{self.lb_port}",
            # HAProxy's (the apps ignore it): where to listen.
            LB_BIND=f"127.0.0.1:{self.lb_port}",
        )

    def pooled_url(self, database: str) -> str:
        return f"postgres://{self.user}:{self.password}@127.0.0.1:{self.pgbouncer_port}/{database}"

    def _pgbouncer_config(self) -> Path:
        """pgbouncer.ini: the compose service's settings; also a pool ``<db>_cursors`` of
        two connections, for tests/test_topology.py to show what pooling does to a held cursor."""
        server = f"host={self.socket_dir} port=5432 dbname={self.database}"
        (self.dir / "userlist.txt").write_text(f'"{self.user}" "{self.password}"\n')
        settings = {
            "listen_addr": "127.0.0.1", "listen_port": str(self.pgbouncer_port), "unix_socket_dir": "",
            "auth_file": str(self.dir / "userlist.txt"), **PGBOUNCER,
            "default_pool_size": str(PGBOUNCER_POOL_SIZE), "admin_users": self.user,
            "ignore_startup_parameters": "extra_float_digits",
        }
        path = self.dir / "pgbouncer.ini"
        path.write_text(f"[databases]\n{self.database} = {server}\n{self.database}_cursors = {server} pool_size=2\n\n"
                        "[pgbouncer]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
        return path

    def _haproxy_servers(self) -> Path:
        """The web servers' file that web-compose.cfg is under compose: loopback addresses."""
        path = self.dir / "web-loopback.cfg"
        path.write_text("backend web\n" + "".join(f"    server web{n} 127.0.0.1:{port}\n"
                                                  for n, port in enumerate(self.web_ports)))
        return path

    def __enter__(self) -> Self:
        try:
            return self._start()
        except BaseException:
            self.__exit__(None, None, None)  # nothing started is left running
            raise

    def _start(self) -> Self:
        # As compose's migrate service: straight to PostgreSQL.
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=BASE_DIR, check=True, capture_output=True,
                       env={**self.env, "DATABASE_URL": self.direct_url, "DB_POOLER": ""})
        for old in Path("/tmp").glob(f"kamidrop-bench-{self.name}-*.log"):
            old.unlink()
        config = self._pgbouncer_config()
        argv = [binary("pgbouncer"), str(config)]
        if os.geteuid() == 0:  # PgBouncer will not run as root: as the owner of PostgreSQL's socket
            owner = pwd.getpwuid(Path(self.socket_dir).stat().st_uid).pw_name
            shutil.chown(self.dir, owner)
            for path in self.dir.iterdir():
                shutil.chown(path, owner)
            argv[1:1] = ["-u", owner]
        port_wait(self.pgbouncer_port, process=self.start_process("pgbouncer", argv), log=self.log_path("pgbouncer"))
        open(self.sink_log, "w").close()
        self.start_process("smtp", [PY, "bench/smtp_sink.py", "--port", str(self.smtp_port), "--log", self.sink_log])
        webs = [self.start_process(f"web{n}", image_web_command(bind=f"127.0.0.1:{port}", workers=self.web_workers))
                for n, port in enumerate(self.web_ports)]
        for n in range(self.rq_workers):
            self.start_worker(f"worker{n}")
        for n, (port, web) in enumerate(zip(self.web_ports, webs)):
            port_wait(port, process=web, log=self.log_path(f"web{n}"), seconds=60)
        lb = self.start_process("lb", [binary("haproxy"), "-db", "-f", str(HAPROXY_DIR / "haproxy.cfg"),
                                       "-f", str(self._haproxy_servers())])
        port_wait(self.lb_port, process=lb, log=self.log_path("lb"))
        # Until HAProxy's own health check passed on every web (a Host Django refuses would fail it).
        deadline = time.monotonic() + 20
        while not all(self.health_checks_passed().values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy's health checks did not pass on every web: {self.health_checks_passed()}")
            time.sleep(0.2)
        return self

    def health_checks_passed(self) -> dict[str, int]:
        """Per web, the health checks (HAProxy's: GET /healthz?scope=replica) it answered 200."""
        return {f"web{n}": len(re.findall(r'"GET /healthz\?scope=replica HTTP/1\.1" 200 ',
                                          Path(self.log_path(f"web{n}")).read_text()))
                for n in range(len(self.web_ports))}

    def __exit__(self, *exc) -> None:
        """Stops every process, and the Redis server and database bench/stack.py made for this run."""
        import psycopg

        from shop.project import embedded

        super().__exit__(*exc)
        shutil.rmtree(self.dir, ignore_errors=True)
        embedded.redis_stop(root=BENCH_REDIS_ROOT / self.name)
        shutil.rmtree(BENCH_REDIS_ROOT / self.name, ignore_errors=True)
        with psycopg.connect(self.direct_url.replace(f"/{self.database}?", "/postgres?"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def request(self, method: str, path: str, *, source: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        """One request to HAProxy from the address ``source`` (127.x.y.z)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.lb_port, timeout=60, source_address=(source, 0))
        try:
            connection.request(method, path, body=body, headers={"Host": "127.0.0.1", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def pgbouncer_show(self, what: str) -> list[dict]:
        """A SHOW command on PgBouncer's admin console (simple query protocol only)."""
        import psycopg

        with psycopg.connect(self.pooled_url("pgbouncer"), autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


def buyer_address(i: int) -> str:
    return f"127.0.{i // 250}.{i % 250 + 2}"


def traffic_run(topology: Topology, *, checkouts: int, concurrency: int = 8) -> dict:
    """Checkouts from distinct addresses (``concurrency`` at a time), one paid by a signed notify, through
    HAProxy; the checks' inputs."""
    import psycopg

    topology.manage_script("bench/checkout.py", "--setup", "--keys", str(checkouts))

    def checkout(i: int) -> tuple[int, bytes]:
        return topology.request(
            "POST", "/api/v1/orders", source=buyer_address(i),
            body=json.dumps({"product": SLUG, "quantity": 1, "email": f"buyer{i}@example.com", "provider": "epay",
                             "device_id": f"topologydev{i:09d}"}).encode(),
            # What a client writes here is not believed: HAProxy appends the address it sees.
            headers={"Content-Type": "application/json", "X-Forwarded-For": f"203.0.113.{i % 250 + 1}"})

    orders, refused = [], []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:  # as many as the two gunicorns' threads
        for i, (status, body) in enumerate(pool.map(checkout, range(checkouts))):
            if status == 201:
                orders.append({**json.loads(body), "source": buyer_address(i)})
            else:
                refused.append((status, body[:200].decode(errors="replace")))
    checkout_s = time.perf_counter() - started
    with psycopg.connect(topology.direct_url, autocommit=True) as conn:
        seen = dict(conn.execute("SELECT order_no, host(client_ip) FROM shop_order").fetchall())
    paid = orders[0] if orders else None
    notify = key = None
    if paid is not None:
        trade_no = f"T{secrets.randbelow(10**12):012d}"
        signed = topology.manage_script("bench/topology.py", "--sign", paid["order_no"], paid["amount"], trade_no)
        notify = topology.request("POST", "/payments/epay/notify", source="127.0.9.9", body=signed.strip().encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = topology.request("GET", f"/api/v1/orders/{paid['order_no']}", source="127.0.9.10",
                                            headers={"Authorization": f"Bearer {paid['token']}"})
            key = json.loads(body) if status == 200 else None
            if key and key["status"] == "DELIVERED" and key["keys"]:
                break
            time.sleep(0.3)
    emailed = [r for r in topology.sink_arrivals() if paid and paid["order_no"] in r.get("message_id", "")]
    audit = topology.manage("audit", check=False)
    served = {}
    for n in range(len(topology.web_ports)):
        log = Path(topology.log_path(f"web{n}")).read_text()
        served[f"web{n}"] = len(re.findall(r'"POST /api/v1/orders HTTP', log))
    pools = [p for p in topology.pgbouncer_show("POOLS") if p["database"] == topology.database]
    stats = [s for s in topology.pgbouncer_show("STATS") if s["database"] == topology.database]
    clients = [c for c in topology.pgbouncer_show("CLIENTS") if c["database"] == topology.database]
    servers = [s for s in topology.pgbouncer_show("SERVERS") if s["database"] == topology.database]
    return {
        "checkouts": checkouts, "orders": orders, "refused": refused, "checkout_s": checkout_s,
        "client_ips": {o["order_no"]: seen.get(o["order_no"]) for o in orders},
        "notify": notify and (notify[0], notify[1].decode(errors="replace")), "paid": paid and paid["order_no"],
        "key": key, "emailed": len(emailed), "audit": (audit.returncode, (audit.stdout + audit.stderr).strip()),
        "served": served, "health_checks": topology.health_checks_passed(), "pool_mode": [p["pool_mode"] for p in pools],
        "transactions": sum(int(s["total_xact_count"]) for s in stats),
        "clients": len(clients), "servers": len(servers),
    }


def verdict(run: dict) -> list[str]:
    problems = []
    if run["refused"] or len(run["orders"]) != run["checkouts"]:
        problems.append(f"checkouts refused: {run['refused'][:3]}")
    wrong = {no: ip for no, ip in run["client_ips"].items()
             if ip != next(o["source"] for o in run["orders"] if o["order_no"] == no)}
    if wrong:
        problems.append(f"orders that do not carry their buyer's address: {dict(list(wrong.items())[:3])}")
    if run["notify"] != (200, "success"):
        problems.append(f"the notify was answered {run['notify']}")
    if not (run["key"] and run["key"]["status"] == "DELIVERED" and run["key"]["keys"]):
        problems.append(f"the paid order's key was not shown: {run['key']}")
    if not run["emailed"]:
        problems.append("the paid order's key was not emailed")
    if run["audit"][0] != 0:
        problems.append(f"audit: {run['audit'][1][-500:]}")
    if sum(run["served"].values()) != len(run["orders"]) or not all(run["served"].values()):
        problems.append(f"checkouts not spread over every web: {run['served']}")
    if not all(run["health_checks"].values()):
        problems.append(f"HAProxy's health checks answered 200: {run['health_checks']}")
    if run["pool_mode"] != ["transaction"]:
        problems.append(f"PgBouncer's pool mode: {run['pool_mode']}")
    if not run["servers"] < run["clients"]:
        problems.append(f"{run['clients']} clients on {run['servers']} server connections: no sharing")
    return problems


def report(args, run: dict, problems: list[str]) -> list[str]:
    return [
        f"\n## topology — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- `.venv/bin/python bench/topology.py {' '.join(sys.argv[1:])}`; {machine()}; commit {commit()}",
        (f"- HAProxy ({HAPROXY_DIR.relative_to(BASE_DIR)}/haproxy.cfg) → {len(run['served'])} gunicorns "
        f"({args.web_workers} gthread worker each) → PgBouncer (transaction, pool {PGBOUNCER_POOL_SIZE}) → "
        f"PostgreSQL; {args.rq_workers} RQ workers"),
        (f"- {len(run['orders'])} of {run['checkouts']} checkouts from distinct addresses in {run['checkout_s']:.1f} s, "
        f"served {run['served']} (health checks answered 200: {run['health_checks']}); every order carries its "
        "buyer's address: "
        f"{'yes' if not any('address' in p for p in problems) else 'NO'}"),
        (f"- notify {run['notify']}; order {run['paid']} {run['key'] and run['key']['status']}, "
        f"{len((run['key'] or {}).get('keys', []))} key shown, {run['emailed']} email; audit exit {run['audit'][0]}"),
        (f"- PgBouncer: {run['transactions']} transactions, {run['clients']} client connections on "
        f"{run['servers']} server connections"),
        "- " + ("no problems" if not problems else "PROBLEMS: " + "; ".join(problems)),
    ]


def notify_sign(order_no: str, amount: str, trade_no: str) -> str:
    """In the stack's environment (``--sign``): a notify body as the EPay gateway signs it."""
    import django

    sys.path.insert(0, str(BASE_DIR))
    django.setup()
    from payments.providers.epay import epay_sign

    params = {"pid": os.environ["EPAY_PID"], "trade_no": trade_no, "out_trade_no": order_no, "type": "alipay",
              "name": "Hot card", "money": amount, "trade_status": "TRADE_SUCCESS", "param": "", "sign_type": "MD5"}
    params["sign"] = epay_sign(params, os.environ["EPAY_KEY"])
    return urlencode(params)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkouts", type=int, default=12)
    parser.add_argument("--web-workers", type=int, default=1, help="gunicorn workers per instance (image: 3)")
    parser.add_argument("--rq-workers", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="append the section to bench/RESULTS.md")
    parser.add_argument("--sign", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sign:
        print(notify_sign(*args.sign))
        return
    with Topology(web_workers=args.web_workers, rq_workers=args.rq_workers) as topology:
        run = traffic_run(topology, checkouts=args.checkouts)
    problems = verdict(run)
    results_report(report(args, run, problems), record=args.record)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
