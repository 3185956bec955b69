"""Who is buying: the identifiers risk decisions are made on, read from a
request without trusting what a client can forge."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# Providers where dots in the local part do not matter and "+tag" is an alias.
_DOTLESS_DOMAINS = {"gmail.com", "googlemail.com"}
_PLUS_TAG_DOMAINS = _DOTLESS_DOMAINS | {
    "outlook.com", "hotmail.com", "live.com", "icloud.com", "me.com", "yahoo.com", "proton.me", "protonmail.com",
    "fastmail.com", "qq.com", "163.com", "126.com", "foxmail.com",
}
DEVICE_COOKIE = "kd_dev"
_DEVICE_RE = re.compile(r"^[A-Za-z0-9_-]{16,40}(\.[0-9a-f]{8,16})?$")


@dataclass(frozen=True)
class BuyerContext:
    email: str  # normalised
    ip: str = ""
    device: str = ""
    phone: str = ""
    user_agent: str = ""

    @property
    def email_domain(self) -> str:
        return self.email.rpartition("@")[2]


def email_normalise(email: str) -> str:
    """Case-fold; for Gmail-style providers drop dots and ``+tag`` aliases."""
    local, _, domain = email.strip().lower().rpartition("@")
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain in _PLUS_TAG_DOMAINS:
        local = local.split("+", 1)[0]
    if domain in _DOTLESS_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}" if domain else local


def ip_normalise(ip: str) -> str:
    """A single address or a CIDR range, canonical; ValueError if neither."""
    value = ip.strip()
    if "/" in value:
        return str(ipaddress.ip_network(value, strict=False))
    return str(ipaddress.ip_address(value))


def phone_normalise(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return f"+{digits}" if phone.strip().startswith("+") else digits


@functools.lru_cache(maxsize=8)
def _trusted(networks: tuple[str, ...]):
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip())


def _is_trusted(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in _trusted(tuple(settings.TRUSTED_PROXIES)))


def client_ip(request) -> str:
    """The buyer's IP. ``X-Forwarded-For`` is believed only when the direct
    peer is one of ``TRUSTED_PROXIES``, and then read from the right, skipping
    our own proxies: whatever a client writes at the left is ignored."""
    peer = request.META.get("REMOTE_ADDR", "")
    if not _is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: fall back to the proxy
    return peer


def ratelimit_ip(request) -> str:
    """``RATELIMIT_IP_META_KEY`` callable: django-ratelimit keys on the same IP.
    A request without a peer address (a unix-socket proxy, a test client) is
    counted under one shared key rather than making django-ratelimit fail."""
    return client_ip(request) or "0.0.0.0"


def device_id(request, submitted: str = "") -> str:
    """The device id set by the shop's own script (cookie ``kd_dev``: a random
    id plus a hash of stable browser traits), or one the API client sent."""
    for candidate in (submitted, request.COOKIES.get(DEVICE_COOKIE, "")):
        candidate = (candidate or "").strip()
        if _DEVICE_RE.match(candidate):
            return candidate
    return ""


def buyer_context(request, *, email: str, phone: str = "", device: str = "") -> BuyerContext:
    return BuyerContext(
        email=email_normalise(email),
        ip=client_ip(request),
        device=device_id(request, device),
        phone=phone_normalise(phone) if phone else "",
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
    )


@functools.lru_cache(maxsize=1)
def disposable_domains() -> frozenset[str]:
    path = Path(__file__).parent / "data" / "disposable_domains.txt"
    return frozenset(
        line.strip().lower() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )


def email_domain_disposable(domain: str) -> bool:
    parts = domain.lower().split(".")
    return any(".".join(parts[i:]) in disposable_domains() for i in range(len(parts) - 1))
