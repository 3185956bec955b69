"""Access logs never record a secret: the order link's token, the signed
link, the lookup link's one-time token, a Referer carrying them."""

import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]
SECRETS = ["TOKENSECRET123", "SIGNEDSECRET456", "LINKSECRET789", "REFERERSECRET0"]


def _dockerfile_gunicorn_args() -> list[str]:
    """The gunicorn options of the image's CMD that shape its access log."""
    cmd = next(line for line in (BASE_DIR / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    args = shlex.split(cmd.removeprefix("CMD exec "))
    wanted = []
    for flag in ("--access-logfile", "--logger-class"):
        assert flag in args, f"{flag} missing from the Dockerfile's CMD"
        wanted += [flag, args[args.index(flag) + 1]]
    return wanted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_gunicorn_as_the_image_runs_it_logs_no_secret(tmp_path):
    # given: gunicorn with the image's access-log options, on this test's database
    args = _dockerfile_gunicorn_args()
    assert args[1] == "-"  # the access log goes to stdout in the image; here to a file to read it back
    args[1] = str(tmp_path / "access.log")
    port = _free_port()
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop.project.settings", "DEBUG": "1",
           "DATABASE_URL": f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
           "REDIS_URL": django_settings.REDIS_URL, "SECRET_KEY": django_settings.SECRET_KEY,
           "KEY_ENCRYPTION_KEYS": ",".join(django_settings.KEY_ENCRYPTION_KEYS),
           "KEY_FINGERPRINT_PEPPER": django_settings.KEY_FINGERPRINT_PEPPER, "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "shop.project.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1", *args], cwd=BASE_DIR, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        # when: requests that carry each kind of secret
        for path, headers in [
            ("/orders/26120400000001/?t=TOKENSECRET123", {}),
            ("/orders/26120400000001/?s=SIGNEDSECRET456&lang=en", {}),
            ("/lookup/link/LINKSECRET789", {}),
            ("/faq/", {"Referer": f"{base}/orders/26120400000001/?t=REFERERSECRET0"}),
        ]:
            try:
                urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10)
            except urllib.error.HTTPError:
                pass
    finally:
        server.terminate()
        server.wait(timeout=20)
    # then
    log = (tmp_path / "access.log").read_text()
    assert log.count("[redacted]") >= 4
    assert "/lookup/link/[redacted]" in log and "lang=en" in log
    for secret in SECRETS:
        assert secret not in log


@pytest.mark.django_db
def test_the_shops_own_request_log_hides_the_lookup_token(client, caplog):
    with caplog.at_level(logging.INFO, logger="shop.request"):
        client.get("/lookup/link/LINKSECRET789")
    lines = [r.getMessage() for r in caplog.records if r.name == "shop.request"]
    assert len(lines) == 1 and re.match(r"GET /lookup/link/\[redacted\] \d{3} \d+ms", lines[0])
