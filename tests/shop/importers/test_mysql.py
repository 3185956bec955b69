"""import_from … --mysql against a real MariaDB (Debian's mariadb-server, installed when missing) holding
the same fixture shops as the dump tests: both readers must bring the same shop across."""

import os
import shutil
import subprocess
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from inventory.models import CardKey, CardKeyStatus
from shop.models import Order
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
DATABASES = {"dujiaoka": ("dj", "dujiaoka.sql"), "acg-faka": ("acg", "acgfaka.sql")}


def _install_mariadb() -> None:
    if shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists():
        return
    subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends mariadb-server mariadb-client", shell=True, check=True,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A MariaDB of its own (a fresh data directory, a free port, no grant
    tables) with the two fixture shops loaded; stopped afterwards."""
    _install_mariadb()
    root = tmp_path_factory.mktemp("mariadb")
    data, socket, port, tmp = root / "data", root / "sock", free_port(), root / "tmp"
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    # Its temporary tables in a directory of its own, not the machine's /tmp:
    # once, in CI, bootstrapping failed on a temporary table file there
    # ("Could not remove temporary table '/tmp/#sql-temptable-…'").
    tmp.mkdir()
    installed = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db",
                                "--auth-root-authentication-method=normal", f"--tmpdir={tmp}", *as_root],
                               check=False, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - open for the server's whole life
    server = subprocess.Popen(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={socket}",
                               f"--port={port}", "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
                               "--innodb-buffer-pool-size=16M", f"--tmpdir={tmp}", *as_root], stdout=log, stderr=log)
    client = ["mariadb", "--no-defaults", f"--socket={socket}"]
    try:
        for _ in range(300):
            if subprocess.run([*client, "-e", "SELECT 1"], check=False, capture_output=True).returncode == 0:
                break
            assert server.poll() is None, (root / "server.log").read_text()
            time.sleep(0.1)
        for database, dump in DATABASES.values():
            subprocess.run([*client, "-e", f"CREATE DATABASE {database}"], check=True)
            with open(FIXTURES / dump, "rb") as sql:
                subprocess.run([*client, database], stdin=sql, check=True)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def run(shop: str, *source: str) -> list[str]:
    out = StringIO()
    call_command("import_from", shop, *source, "--dry-run", stdout=out)
    lines = out.getvalue().splitlines()
    # The counts and reasons; the details name import batches, whose ids differ from run to run.
    return lines[1:lines.index("details:")] if "details:" in lines else lines[1:]


@pytest.mark.parametrize("shop", sorted(DATABASES))
def test_the_database_and_its_dump_bring_the_same_shop_across(mariadb, shop):
    # given
    database, dump = DATABASES[shop]
    # when
    from_mysql = run(shop, "--mysql", f"mysql://root@127.0.0.1:{mariadb}/{database}")
    from_dump = run(shop, "--dump", str(FIXTURES / dump))
    # then
    assert from_mysql == from_dump
    assert any(line.startswith("orders ") for line in from_mysql)


def test_keys_and_orders_read_from_mysql_are_the_same_text(mariadb, django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_from", "dujiaoka", "--mysql", f"mysql://root@127.0.0.1:{mariadb}/dj", stdout=StringIO())
    # then
    assert sorted(key.secret for key in CardKey.objects.filter(status=CardKeyStatus.AVAILABLE)) == [
        "STEAM-'Q'-0006\\x", "STEAM-AAAA-0003", "VPN-2222-BBBB", "VPN-3333-CCCC", "netflix: share@example.com / pa'ss",
        "卡密-中文-0008"]
    first = Order.objects.get(order_no="DJORDER0000000001")
    assert first.paid_at.isoformat() == "2023-05-02T04:01:00+00:00"
    audit = StringIO()
    call_command("audit", stdout=audit)
    assert "all invariants hold" in audit.getvalue()
