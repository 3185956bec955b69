"""The deployment files: Dockerfile, docker-compose.yml and .env.example.

Checked without a Docker engine: the files are parsed (PyYAML for the compose
file, a small reader for the Dockerfile), `docker compose config` validates the
compose file when a compose binary is installed, and the commands the image
runs at build time and as its health check are run here against the project.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
DOCKERFILE = BASE_DIR / "Dockerfile"
COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
ENV_EXAMPLE = BASE_DIR / ".env.example"
# The settings module and the sibling modules it reads the payment gateways', the database's, Redis's
# and the exports' variables from.
SETTINGS_FILES = [BASE_DIR / "shop" / "project" / name
                  for name in ("settings.py", "gateways.py", "database_config.py", "redis_config.py", "exports_config.py")]

# Read by docker-compose.yml (the postgres service, DATABASE_URL) or by the
# image's command, not by the settings.
DEPLOY_ONLY_VARIABLES = {
    "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "WEB_CONCURRENCY", "WEB_THREADS",
}
# With DEBUG off the settings refuse to start without these; the last two
# would otherwise start the embedded servers.
BUILD_TIME_VARIABLES = {
    "SECRET_KEY", "KEY_ENCRYPTION_KEYS", "KEY_FINGERPRINT_PEPPER", "ALLOWED_HOSTS", "SITE_URL", "DATABASE_URL", "REDIS_URL",
}


def settings_variables() -> set[str]:
    """Names of the environment variables the settings (shop/project/settings.py, gateways.py) read."""
    text = "\n".join(path.read_text() for path in SETTINGS_FILES)
    readers = r"(?:env_str|env_bool|env_int|env_list|_secret|_service_url|os\.environ\.get|os\.getenv)\(\s*"
    names = set(re.findall(readers + r"[\"']([A-Z][A-Z0-9_]*)[\"']", text))
    names |= set(re.findall(r"os\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\]", text))
    return names


def env_example() -> dict[str, dict]:
    """``NAME`` → {active, value, comment}: ``NAME=v`` is active, ``# NAME=v`` optional."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    entries = {}
    for i, line in enumerate(lines):
        match = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            above = lines[i - 1] if i else ""
            assert match[2] not in entries, f"{match[2]} is listed twice in .env.example"
            entries[match[2]] = {"active": match[1] is None, "value": match[3], "comment": above}
    return entries


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def dockerfile_healthcheck_code() -> str:
    (args,) = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    exec_form = json.loads(args[args.index("CMD") + len("CMD"):].strip())
    assert exec_form[:2] == ["python", "-c"]
    return exec_form[2]


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_command() -> list[str] | None:
    """`docker compose` or `docker-compose`, whichever is installed, else None."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], check=False, capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def command_text(command) -> str:
    return command if isinstance(command, str) else " ".join(command)


# --- Dockerfile -----------------------------------------------------------------


def test_dockerfile_builds_from_python_311_slim_without_build_tools():
    instructions = dockerfile_instructions()
    assert [args for keyword, args in instructions if keyword == "FROM"] == ["python:3.11-slim"]
    text = DOCKERFILE.read_text()
    assert "apt-get" not in text
    assert "build-essential" not in text and "gcc" not in text


def test_dockerfile_installs_the_dependencies_pyproject_declares_and_the_mysql_driver():
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    (install,) = [run for run in runs if "pip install" in run]
    assert "--no-cache-dir" in install
    # when: the step's requirement list is made from this pyproject.toml, as the build makes it
    script = re.search(r'python -c "(.+?)" > /tmp/requirements.txt', install).group(1)
    listed = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, capture_output=True, text=True,
                            check=True).stdout.split()
    # then: every dependency, and PyMySQL for import_from --mysql
    project = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]
    assert set(listed) >= {d.replace(" ", "") for d in project["dependencies"]}
    assert any(requirement.startswith("PyMySQL") for requirement in listed)


def test_dockerfile_sets_production_environment():
    env = dockerfile_env()
    assert env["DEBUG"] == "0"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"] == "/app"


def test_dockerfile_runs_gunicorn_as_a_user_who_is_not_root():
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users == ["kamidrop"]
    (adduser,) = [args for keyword, args in instructions if keyword == "RUN" and "useradd" in args]
    assert "--gid 10001" in adduser and "--uid 10001" in adduser  # fixed: deploy/k8s runs as 10001
    (cmd,) = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmd == (
        "exec gunicorn shop.project.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-3} "
        "--worker-class gthread --threads ${WEB_THREADS:-4} --worker-tmp-dir /dev/shm --access-logfile - "
        "--logger-class shop.project.accesslog.RedactingLogger"
    )
    # USER after every RUN (the build steps run as root), before the command
    assert keywords.index("USER") > max(i for i, keyword in enumerate(keywords) if keyword == "RUN")
    assert keywords.index("USER") < keywords.index("CMD")
    assert [args for keyword, args in instructions if keyword == "EXPOSE"] == ["8000"]


def dockerfile_gunicorn_command(*, bind: str, gunicorn: str = "") -> str:
    """The image's command for ``sh -c``, on another address, with ``gunicorn`` options added."""
    (cmd,) = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    assert " --bind 0.0.0.0:8000 " in cmd
    cmd = cmd.replace(" --bind 0.0.0.0:8000 ", f" --bind {bind} ")
    options = f" {gunicorn}" if gunicorn else ""
    return cmd.replace("exec gunicorn ", f"exec {shlex.quote(sys.executable)} -m gunicorn{options} ", 1)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, {"worker_class": "gthread", "workers": "3", "threads": "4"}),
    ({"WEB_CONCURRENCY": "2", "WEB_THREADS": "8"}, {"worker_class": "gthread", "workers": "2", "threads": "8"}),
])
def test_dockerfile_command_configures_gthread_workers(overrides, expected):
    # given: the image's command as its shell expands it, made a configuration print-out
    env = {k: v for k, v in os.environ.items() if k not in {"WEB_CONCURRENCY", "WEB_THREADS"}}
    env.update(overrides, DJANGO_SETTINGS_MODULE="tests.settings")
    command = dockerfile_gunicorn_command(bind="127.0.0.1:8000", gunicorn="--print-config")
    # when
    result = subprocess.run(["sh", "-c", command], check=False, cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=120)
    # then
    assert result.returncode == 0, result.stderr
    config = {name.strip(): value.strip() for name, _, value in
              (line.partition(" = ") for line in result.stdout.splitlines() if " = " in line)}
    assert {name: config.get(name) for name in expected} == expected


@pytest.mark.django_db
def test_dockerfile_command_serves_several_requests_over_one_kept_alive_connection(tmp_path):
    # given: the image's gunicorn, started as the image starts it, on a free port,
    # on this run's (migrated) test database: pages read the shop's notice and FAQ
    import http.client
    import socket
    import time
    from urllib.parse import urlsplit, urlunsplit

    from django.conf import settings
    from django.db import connection as db_connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in {"WEB_CONCURRENCY", "WEB_THREADS"}}
    database_url = urlsplit(settings.DATABASE_URL)._replace(path=f"/{db_connection.settings_dict['NAME']}")
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", WEB_CONCURRENCY="1", DATABASE_URL=urlunsplit(database_url))
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed in the finally below
    server = subprocess.Popen(["sh", "-c", dockerfile_gunicorn_command(bind=f"127.0.0.1:{port}")], cwd=BASE_DIR,
                              env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not listen within 60 s"
                time.sleep(0.1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        # when: two requests, one connection
        answers = []
        for _ in range(2):
            connection.request("GET", "/faq/", headers={"Host": "localhost"})
            response = connection.getresponse()
            answers.append((response.status, response.getheader("Connection"), response.will_close))
            response.read()
        sockets = connection.sock is not None
        connection.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
    # then: a sync worker would have answered "Connection: close" and hung up
    assert answers == [(200, "keep-alive", False), (200, "keep-alive", False)]
    assert sockets


def test_dockerfile_healthcheck_fetches_healthz_with_python():
    (args,) = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert args.startswith("--interval=30s --timeout=5s --start-period=20s --retries=3 CMD [")
    code = dockerfile_healthcheck_code()
    assert "urllib.request.urlopen" in code
    assert "'http://127.0.0.1:8000/healthz'" in code
    assert "curl" not in args and "wget" not in args


def test_dockerfile_collectstatic_step_imports_settings_without_servers(tmp_path):
    # given: the build step as the image runs it (its ENV, its RUN line), made
    # a dry run, with a data directory that would receive any embedded server
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    (step,) = [run for run in runs if "collectstatic" in run]
    step = step[: step.index("collectstatic --noinput") + len("collectstatic --noinput")]
    for name in BUILD_TIME_VARIABLES:
        assert re.search(rf"(?:^|\s){name}=\S", step), f"{name} is not given to collectstatic"
    env = {k: v for k, v in os.environ.items() if k not in BUILD_TIME_VARIABLES | {"DEBUG"}}
    env.update(dockerfile_env())
    data_dir = tmp_path / "data"
    env.update(
        DJANGO_SETTINGS_MODULE="shop.project.settings",
        KAMIDROP_DATA_DIR=str(data_dir),
        PYTHONPATH=str(BASE_DIR),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    # when
    result = subprocess.run(["sh", "-c", step + " --dry-run"], check=False, cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=120)
    # then
    assert result.returncode == 0, result.stderr
    assert "static files copied" in result.stdout
    assert not data_dir.exists()


@pytest.mark.django_db
def test_healthcheck_command_passes_with_the_first_allowed_host(live_server, settings):
    # given: a site that answers only to its own host name, as in production
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    code = dockerfile_healthcheck_code().replace("http://127.0.0.1:8000", live_server.url)

    def healthcheck(allowed_hosts: str) -> int:
        env = {**os.environ, "ALLOWED_HOSTS": allowed_hosts}
        return subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True,
                              timeout=30).returncode

    # when / then: the Host header is the first allowed host, leading dot and all
    assert healthcheck("shop.example.com,www.example.com") == 0
    assert healthcheck(" .shop.example.com") == 0
    # a Host the site refuses (400) fails the check: the header is what makes it pass
    assert healthcheck("other.example.com") == 1


# --- docker-compose.yml -----------------------------------------------------------

APP_SERVICES = ("migrate", "web", "worker", "sweeper")
COMPOSE_DATABASE = "${POSTGRES_USER:-kamidrop}:${POSTGRES_PASSWORD:-kamidrop}@{host}:5432/${POSTGRES_DB:-kamidrop}"
HAPROXY_DIR = BASE_DIR / "deploy" / "haproxy"


def compose_schema_check(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema against the Compose Specification's JSON schema, the copy
    check-jsonschema ships (vendored from the compose-spec project, Apache-2.0): offline."""
    return subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                           "vendor.compose-spec", str(path)], check=False, capture_output=True, text=True, timeout=120)


def haproxy_lines(name: str = "haproxy.cfg") -> list[str]:
    """The configuration's lines, stripped, comments and blank lines dropped."""
    lines = (line.strip() for line in (HAPROXY_DIR / name).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_compose_runs_postgres_16_and_redis_7_with_append_only_file():
    services = compose()["services"]
    assert set(services) == {"postgres", "pgbouncer", "redis", "migrate", "lb", "web", "worker", "sweeper"}
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["image"] == "postgres:16"
    assert postgres["command"] == ["postgres", "-c", "timezone=UTC"]  # Django's: no connection needs to SET it
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert postgres["healthcheck"]["test"][1].startswith("pg_isready ")
    assert redis["image"] == "redis:7"
    assert redis["command"] == ["redis-server", "--appendonly", "yes"]
    assert redis["volumes"] == ["redis-data:/data"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert set(compose()["volumes"]) == {"postgres-data", "redis-data", "media-data"}


def test_compose_app_services_use_the_image_and_reach_postgres_through_pgbouncer():
    services = compose()["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["env_file"] == ".env", name
        environment = service["environment"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0", name
        if name == "migrate":  # migrations straight to PostgreSQL, not through the pool
            assert environment["DATABASE_URL"] == "postgres://" + COMPOSE_DATABASE.replace("{host}", "postgres")
            assert environment["DB_POOLER"] == ""
        else:
            assert environment["DATABASE_URL"] == "postgres://" + COMPOSE_DATABASE.replace("{host}", "pgbouncer"), name
            assert environment["DB_POOLER"] == "transaction", name
    postgres_env = services["postgres"]["environment"]
    assert postgres_env == {
        "POSTGRES_DB": "${POSTGRES_DB:-kamidrop}",
        "POSTGRES_USER": "${POSTGRES_USER:-kamidrop}",
        "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-kamidrop}",
    }


def test_compose_pgbouncer_pools_transactions_in_front_of_postgres_as_the_topology_run_does():
    from bench.topology import PGBOUNCER

    pgbouncer = compose()["services"]["pgbouncer"]
    environment = pgbouncer["environment"]
    # the image is pinned, and configured from these variables by its entrypoint
    assert re.fullmatch(r"edoburu/pgbouncer:v1\.\d+\.\d+-p\d+", pgbouncer["image"])
    assert environment["POOL_MODE"] == PGBOUNCER["pool_mode"] == "transaction"
    assert environment["AUTH_TYPE"] == PGBOUNCER["auth_type"]
    assert environment["MAX_CLIENT_CONN"] == PGBOUNCER["max_client_conn"]
    assert (environment["DB_HOST"], environment["DB_PORT"]) == ("postgres", "5432")
    assert (environment["DB_NAME"], environment["DB_USER"], environment["DB_PASSWORD"]) == (
        "${POSTGRES_DB:-kamidrop}", "${POSTGRES_USER:-kamidrop}", "${POSTGRES_PASSWORD:-kamidrop}")
    assert pgbouncer["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert pgbouncer["healthcheck"]["test"] == ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432"]


def test_compose_migrates_once_before_web_and_worker_start():
    services = compose()["services"]
    servers_healthy = {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}}
    assert command_text(services["migrate"]["command"]) == "python manage.py migrate --noinput"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == servers_healthy
    for name in ("web", "worker", "sweeper"):
        assert services[name]["depends_on"] == {
            **servers_healthy, "pgbouncer": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("postgres", "pgbouncer", "redis", "lb"):
        assert services[name]["restart"] == "unless-stopped", name


def test_compose_web_publishes_no_port_and_keeps_the_image_healthcheck():
    # `--scale web=N` would fail on a host port taken by the first replica
    web = compose()["services"]["web"]
    assert "command" not in web  # the image's gunicorn
    assert "ports" not in web and "container_name" not in web
    assert web["healthcheck"]["test"] == ["CMD", "python", "-c", dockerfile_healthcheck_code()]
    scaled = [name for name, service in compose()["services"].items()
              if name in ("web", "worker") and ("ports" in service or "container_name" in service)]
    assert scaled == []


def test_compose_balancer_publishes_8000_and_finds_every_web_replica_through_docker_dns():
    lb = compose()["services"]["lb"]
    assert lb["image"].startswith("haproxy:2.")
    assert lb["ports"] == ["8000:8000"]
    assert lb["volumes"] == ["./deploy/haproxy:/usr/local/etc/haproxy:ro"]
    assert lb["command"] == ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg",
                             "-f", "/usr/local/etc/haproxy/web-compose.cfg"]
    assert lb["environment"]["LB_BIND"] == ":8000"
    assert lb["environment"]["ALLOWED_HOSTS"].startswith("${ALLOWED_HOSTS:?")
    servers = haproxy_lines("web-compose.cfg")
    assert "nameserver dns 127.0.0.11:53" in servers  # Docker's embedded DNS server
    (template,) = [line for line in servers if line.startswith("server-template ")]
    assert re.fullmatch(r"server-template web (\d+) web:8000 resolvers docker resolve-prefer ipv4 init-addr none",
                        template)
    assert int(template.split()[2]) >= 3


def test_balancer_checks_healthz_and_sets_x_forwarded_for():
    lines = haproxy_lines()
    assert "option forwardfor" in lines
    assert "option httpchk" in lines
    (send,) = [line for line in lines if line.startswith("http-check send ")]
    assert send.startswith("http-check send meth GET uri /healthz?scope=replica ver HTTP/1.1 hdr Host ")
    assert "env(ALLOWED_HOSTS)" in send
    assert "http-check expect status 200" in lines
    assert any(line.startswith("default-server check ") for line in lines)
    # the one path into the health check exists
    from django.urls import resolve

    assert resolve("/healthz").url_name == "healthz"
    # only a failed connect is retried: a notify is never sent twice
    assert not any(line.startswith("retry-on") for line in lines)


def test_balancer_configuration_is_valid_for_haproxy_with_either_server_list(tmp_path):
    # given: Debian's haproxy (installed when missing), as bench/topology.py runs it
    from bench.topology import binary, debian_packages_ensure

    debian_packages_ensure({"haproxy": "haproxy"})
    loopback = tmp_path / "web-loopback.cfg"
    loopback.write_text("backend web\n    server web0 127.0.0.1:1\n")
    env = {**os.environ, "LB_BIND": "127.0.0.1:1", "ALLOWED_HOSTS": "shop.example.com"}
    for servers in (HAPROXY_DIR / "web-compose.cfg", loopback):
        # when
        result = subprocess.run([binary("haproxy"), "-c", "-f", str(HAPROXY_DIR / "haproxy.cfg"), "-f", str(servers)],
                                check=False, env=env, capture_output=True, text=True, timeout=60)
        # then
        assert result.returncode == 0, result.stdout + result.stderr


def test_compose_apps_trust_x_forwarded_for_from_the_balancer_address_only():
    import ipaddress

    data = compose()
    lb_address = data["services"]["lb"]["networks"]["default"]["ipv4_address"]
    (subnet,) = [entry["subnet"] for entry in data["networks"]["default"]["ipam"]["config"]]
    assert ipaddress.ip_address(lb_address) in ipaddress.ip_network(subnet)
    for name in APP_SERVICES:
        trusted = data["services"][name]["environment"]["TRUSTED_PROXIES"]
        # the balancer, then what .env adds (a TLS proxy in front of it)
        assert trusted == f"{lb_address},${{TRUSTED_PROXIES:-}}", name


def test_compose_worker_runs_both_queues_with_the_scheduler():
    worker = compose()["services"]["worker"]
    assert command_text(worker["command"]) == "python manage.py rqworker delivery payments default --with-scheduler"
    assert worker["healthcheck"] == {"disable": True}  # it serves no /healthz


def test_compose_file_is_valid(tmp_path):
    # given: the compose file beside a .env made from the example, as the
    # README says to run it
    data = compose()
    assert set(data) - {"services", "volumes", "networks"} == {"x-app", "x-app-depends"}
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert interpolated == {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "ALLOWED_HOSTS", "TRUSTED_PROXIES"}
    assert interpolated <= set(env_example())
    for service in data["services"].values():
        assert set(service.get("depends_on", {})) <= set(data["services"])
    schema = compose_schema_check(COMPOSE_FILE)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    for name in ("Dockerfile", "docker-compose.yml"):
        shutil.copy(BASE_DIR / name, tmp_path / name)
    shutil.copytree(HAPROXY_DIR, tmp_path / "deploy" / "haproxy")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    command = compose_command()
    if command is None:  # no compose binary on this machine: the checks above are all
        return
    # when
    result = subprocess.run([*command, "-p", "kamidrop", "config", "-q"], check=False, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_compose_schema_check_catches_a_misspelt_key(tmp_path):
    # given: the compose file with one key misspelt
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    stop_grace_period: 75s", "    stop_grace_perod: 75s"))
    # when
    result = compose_schema_check(broken)
    # then
    assert result.returncode == 1
    assert "'stop_grace_perod' was unexpected" in result.stdout


# --- .env.example --------------------------------------------------------------------


def test_env_example_names_exactly_the_variables_settings_read():
    read = settings_variables()
    assert {"DEBUG", "SECRET_KEY", "KEY_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL"} <= read
    assert set(env_example()) == read | DEPLOY_ONLY_VARIABLES
    assert not read & DEPLOY_ONLY_VARIABLES


def test_env_example_deploy_only_variables_are_used_by_the_deploy_files():
    deploy_text = COMPOSE_FILE.read_text() + DOCKERFILE.read_text()
    for name in DEPLOY_ONLY_VARIABLES:
        assert "${" + name + ":-" in deploy_text, name


def test_env_example_comments_every_variable_and_leaves_secrets_empty():
    entries = env_example()
    for name, entry in entries.items():
        assert entry["comment"].startswith("# "), name
        assert not re.fullmatch(r"# [A-Z][A-Z0-9_]*=.*", entry["comment"]), name
    for name in ("SECRET_KEY", "KEY_ENCRYPTION_KEYS", "KEY_FINGERPRINT_PEPPER", "POSTGRES_PASSWORD"):
        assert entries[name]["active"] and entries[name]["value"] == "", name
        assert "generate: python -c" in entries[name]["comment"], name
    assert entries["DEBUG"]["active"] and entries["DEBUG"]["value"] == "0"
    assert not any("$" in entry["value"] or '"' in entry["value"] for entry in entries.values())


def _settings_subprocess(env_overrides: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """`manage.py check` under shop.project.settings with .env.example's active lines,
    the compose URLs (unreachable: check connects to neither) and ``env_overrides``."""
    entries = env_example()
    read = settings_variables()
    env = {k: v for k, v in os.environ.items() if k not in read}
    env.update({name: entry["value"] for name, entry in entries.items() if entry["active"]})
    env.update(
        DATABASE_URL="postgres://kamidrop:kamidrop@127.0.0.1:1/kamidrop",
        REDIS_URL="redis://127.0.0.1:1/0",
        DJANGO_SETTINGS_MODULE="shop.project.settings",
        KAMIDROP_DATA_DIR=str(tmp_path / "data"),
        **env_overrides,
    )
    return subprocess.run([sys.executable, "manage.py", "check"], check=False, cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)


def test_env_example_unfilled_refuses_to_start(tmp_path):
    # when: the example used as is, secrets still empty
    result = _settings_subprocess({}, tmp_path)
    # then
    assert result.returncode == 1
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert not (tmp_path / "data").exists()


def test_env_example_with_secrets_filled_in_passes_the_system_check(tmp_path):
    # when: the secrets generated the way the example says, and the mail server
    result = _settings_subprocess({
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "KEY_FINGERPRINT_PEPPER": secrets.token_urlsafe(32),
        "EMAIL_URL": "smtp://shop:pw@smtp.example.com:587?tls=1",
    }, tmp_path)
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"
    assert not (tmp_path / "data").exists()


def test_compose_runs_the_sweeper_loop_apart_from_redis():
    sweeper = compose()["services"]["sweeper"]
    assert command_text(sweeper["command"]) == "python manage.py sweep --every 60"
    assert sweeper["restart"] == "unless-stopped"


def test_compose_gives_the_worker_the_cpu_weight_the_flash_sale_benchmark_measures():
    # The benchmark's figures hold for a deployment that weighs web and
    # worker as it does: web at the default 1024 shares, the worker lower.
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_stack", BASE_DIR / "bench" / "stack.py")
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    services = compose()["services"]
    assert "cpu_shares" not in services["web"]
    assert services["worker"]["cpu_shares"] == stack.NICE_WEIGHT[stack.WORKER_NICE] < stack.NICE_WEIGHT[0]
