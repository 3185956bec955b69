"""`manage.py check --deploy` is clean with a production-like environment."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def production_env(**overrides) -> dict:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "DJANGO_SETTINGS_MODULE": "shop.project.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KEY_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "KEY_FINGERPRINT_PEPPER": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "shop.example.com",
        "SITE_URL": "https://shop.example.com",
        # Not connected to by the checks: nothing listens there.
        "DATABASE_URL": "postgres://kamidrop:pw@127.0.0.1:9/kamidrop",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "EMAIL_URL": "smtp://shop:pw@smtp.example.com:587?tls=1",
        "BEHIND_TLS_PROXY": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
    }
    return {**env, **overrides}


def check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_check_deploy_is_clean_in_production():
    # when
    result = check_deploy(production_env())
    # then
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_hsts():
    # when: the same, before HTTPS is confirmed
    result = check_deploy(production_env(SECURE_HSTS_SECONDS="0"))
    # then
    assert result.returncode == 1
    assert "security.W004" in result.stderr
