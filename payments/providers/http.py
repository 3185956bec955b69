"""What the plug-ins share to talk to a provider: one HTTP call with a
timeout (an HTTP error status is an answer, a network failure is
ProviderUnreachable), the provider's clock from its Date header, and RSA keys
as owners paste them (PEM, PEM with literal ``\\n``, or the bare base64 the
Alipay and WeChat consoles show)."""

from __future__ import annotations

import base64
import email.utils
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from payments.providers.base import ProviderUnreachable

logger = logging.getLogger(__name__)

TIMEOUT = 10
MAX_ANSWER = 1_000_000


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict  # lower-case names
    body: bytes
    server_time: datetime | None

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def http_date_parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def http_call(method: str, url: str, *, body: bytes | None = None, headers: dict | None = None,
              timeout: float = TIMEOUT) -> HttpAnswer:
    """One request; never logs the URL or the body (they may carry keys)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _answer(response.status, response.headers, response.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        with exc:
            return _answer(exc.code, exc.headers, exc.read(MAX_ANSWER))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise ProviderUnreachable("GATEWAY_UNREACHABLE", type(exc).__name__) from None


def _answer(status, headers, body) -> HttpAnswer:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return HttpAnswer(status=status, headers=lowered, body=body, server_time=http_date_parse(lowered.get("date")))


def _pem_or_der(text: str, label: str) -> tuple[bytes | None, bytes | None]:
    text = (text or "").strip().replace("\\n", "\n")
    if "-----BEGIN" in text:
        return text.encode(), None
    try:
        return None, base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        raise ValueError(f"the {label} is neither PEM nor base64") from None


def rsa_private_key_load(text: str) -> RSAPrivateKey:
    """A merchant's RSA private key: PKCS#8 or PKCS#1, PEM or bare base64 DER."""
    pem, der = _pem_or_der(text, "private key")
    key = (serialization.load_pem_private_key(pem, password=None) if pem
           else serialization.load_der_private_key(der, password=None))
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    return key


def rsa_public_key_load(text: str) -> RSAPublicKey:
    """A provider's RSA public key: SubjectPublicKeyInfo or an X.509
    certificate, PEM or bare base64 DER."""
    pem, der = _pem_or_der(text, "public key")
    if pem:
        key = (x509.load_pem_x509_certificate(pem).public_key() if b"CERTIFICATE" in pem
               else serialization.load_pem_public_key(pem))
    else:
        try:
            key = serialization.load_der_public_key(der)
        except ValueError:
            key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the public key is not an RSA key")
    return key
