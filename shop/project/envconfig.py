"""Reading configuration from environment variables (the twelve-factor way)."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str, *, connect_timeout: int | None = None) -> dict:
    """``postgres://user:pass@host:port/name?sslmode=require`` → a DATABASES entry.

    A unix socket directory may be given as ``?host=/path`` (libpq style), which
    is what the embedded server reports. Several hosts may be listed, as libpq
    takes them (``postgres://u:p@db1:5432,db2:5432/shop?target_session_attrs=read-write``):
    a connection tries them in turn and keeps the first that accepts writes, so
    after a failover the apps find the new primary by themselves. HOST and PORT
    are then libpq's comma-separated lists.

    ``connect_timeout`` (seconds, per host; the settings pass
    ``DB_CONNECT_TIMEOUT``, 3) applies unless the URL gives its own: a dead
    machine whose address drops packets would otherwise hold every new
    connection for the kernel's SYN retries (about two minutes) before the
    next host in the list is tried, far past the failover's 15 s.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if connect_timeout is not None:
        query.setdefault("connect_timeout", str(connect_timeout))
    hosts, ports = _hosts_ports(parts.netloc.rpartition("@")[2])
    host = query.pop("host", None) or ",".join(hosts)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": ",".join(ports) if any(ports) else "",
        "OPTIONS": query,
    }


def _hosts_ports(hostlist: str) -> tuple[list[str], list[str]]:
    """``db1:5432,[::1]:5433,db3`` → (["db1", "::1", "db3"], ["5432", "5433", ""]): an
    empty port is libpq's default for that host."""
    hosts, ports = [], []
    for entry in hostlist.split(",") if hostlist else []:
        if entry.startswith("["):  # [IPv6]:port
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = entry.partition(":")
        if port and not port.isdigit():
            raise ImproperlyConfigured(f"DATABASE_URL has a port that is not a number: {entry!r}")
        hosts.append(unquote(host))
        ports.append(port)
    return hosts, ports


def email_from_url(url: str) -> dict:
    """``smtp://user:pass@host:587?tls=1`` / ``smtps://…`` / ``console://`` → EMAIL_* settings."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    backends = {
        "console": "django.core.mail.backends.console.EmailBackend",
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
        "smtp": "django.core.mail.backends.smtp.EmailBackend",
        "smtps": "django.core.mail.backends.smtp.EmailBackend",
    }
    if parts.scheme not in backends:
        raise ImproperlyConfigured(f"EMAIL_URL scheme must be one of {sorted(backends)}, got {parts.scheme!r}")
    config = {"EMAIL_BACKEND": backends[parts.scheme]}
    if parts.scheme in {"smtp", "smtps"}:
        config.update(
            EMAIL_HOST=parts.hostname or "localhost",
            EMAIL_PORT=parts.port or (465 if parts.scheme == "smtps" else 25),
            EMAIL_HOST_USER=unquote(parts.username or ""),
            EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
            EMAIL_USE_SSL=parts.scheme == "smtps",
            EMAIL_USE_TLS=query.get("tls", "0").lower() in _TRUE,
        )
    return config
