"""WeChat Pay API v3 signatures: signing requests, verifying answers and notifies, opening a notify's resource."""

from __future__ import annotations

import base64
import binascii
import secrets
import time

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payments.providers.base import CallbackRejected

SCHEME = "WECHATPAY2-SHA256-RSA2048"


# --- signing and verifying (pure functions, so the tests can pin them) --------

def wechat_request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes | str) -> bytes:
    """The string a request's signature covers: ``path`` with its query
    string, ``body`` exactly as sent (empty for a GET)."""
    body = body.encode() if isinstance(body, str) else body
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def wechat_answer_message(timestamp: str, nonce: str, body: bytes | str) -> bytes:
    """The string WeChat's signature over an answer or a notify covers."""
    body = body.encode() if isinstance(body, str) else body
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def wechat_sign(private_key: RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def wechat_signature_valid(public_key: RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def wechat_authorization(*, private_key: RSAPrivateKey, mchid: str, serial: str, method: str, path: str,
                         body: bytes, timestamp: str | None = None, nonce: str | None = None) -> str:
    """The ``Authorization`` header of one request."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or secrets.token_hex(16).upper()
    signature = wechat_sign(private_key, wechat_request_message(method, path, timestamp, nonce, body))
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial}"')


def wechat_decrypt(apiv3_key: str, resource: dict) -> bytes:
    """The notify's ``resource`` opened with the APIv3 key; raises
    CallbackRejected("DECRYPT_FAILED") if it is not ours or was altered."""
    fields = {name: resource.get(name) for name in ("algorithm", "ciphertext", "nonce", "associated_data")}
    if fields["associated_data"] is None:
        fields["associated_data"] = ""
    if fields["algorithm"] != "AEAD_AES_256_GCM" or not all(isinstance(v, str) for v in fields.values()):
        raise CallbackRejected("DECRYPT_FAILED", "the resource is not AEAD_AES_256_GCM")
    try:
        return AESGCM(apiv3_key.encode()).decrypt(
            fields["nonce"].encode(), base64.b64decode(fields["ciphertext"], validate=True),
            fields["associated_data"].encode(),
        )
    except (InvalidTag, binascii.Error, ValueError, TypeError, OverflowError):
        raise CallbackRejected("DECRYPT_FAILED") from None
