"""A manual product's delivery content (代充): what staff type in for one
order line becomes a key of that product, sealed and fingerprinted like any
other, held for that line, so the claim hands it over and every path that
reads an order's keys (the inbox, email, SMS, resend, the audit) serves it.
"""

from __future__ import annotations

from inventory import sealing
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from inventory.services.owner import keys_audit


def key_manual_hold(*, line_id: int, product_id: int, content: str, actor: str, detail: str = "") -> int:
    """Seal ``content`` as a key of the product held for the order line and
    audit it; returns its id. Call inside a transaction holding the order's
    lock (the claim takes the key in the same transaction).

    The fingerprint is of the content *and the line*: two buyers may get the
    same words ("recharged, check your account") without the unique
    fingerprints refusing the second, while the audit's "no key on two
    lines" still holds. No loose fingerprint: the public key check page
    never finds it."""
    key = CardKey.objects.create(
        product_id=product_id, secret_sealed=sealing.secret_seal(content, product_id=product_id),
        fingerprint=sealing.secret_fingerprint(f"manual:{line_id}:{content}"), loose_fingerprint="",
        status=CardKeyStatus.HELD, order_line_id=line_id,
    )
    keys_audit(key_ids=[key.pk], action=KeyAuditEvent.Action.IMPORTED, actor=actor,
               detail=(detail or f"entered by staff for order line {line_id}")[:300])
    return key.pk


def key_manual_history(*, line_id: int, product_id: int, content: str, at, actor: str, detail: str) -> int:
    """A manual order brought from another shop (``import_from``): its
    content, delivered there at ``at``, as the line's delivered key, so the
    order reads like one staff delivered here. Fingerprinted per line like
    ``key_manual_hold``. Call inside a transaction."""
    key = CardKey.objects.create(
        product_id=product_id, secret_sealed=sealing.secret_seal(content, product_id=product_id),
        fingerprint=sealing.secret_fingerprint(f"manual:{line_id}:{content}"), loose_fingerprint="",
        status=CardKeyStatus.DELIVERED, order_line_id=line_id, reserved_at=at, delivered_at=at,
    )
    keys_audit(key_ids=[key.pk], action=KeyAuditEvent.Action.DELIVERED, actor=actor, detail=detail[:300])
    return key.pk
