"""Writing payment methods: credentials sealed at rest, re-sealed on key rotation."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from inventory.sealing import sealed_by_primary
from payments.methods import credentials_open, credentials_seal, methods_forget
from payments.models import PaymentMethod

# The credentials each provider keeps sealed (never shown again in full).
SECRET_FIELDS = {
    "epay": ("key",),
    "alipay": ("private_key", "public_key"),
    "wechat": ("private_key", "apiv3_key", "platform_public_key"),
    "epusdt": ("token",),
    "stripe": ("secret_key", "webhook_secret"),
}


def credentials_masked(*, method: PaymentMethod) -> dict[str, str]:
    """What the admin may show of each stored credential: that it is set, and its last 4 characters."""
    stored = credentials_open(code=method.code, sealed=method.credentials_sealed) if method.pk else {}
    return {name: f"set, ends …{value.strip()[-4:]}" for name, value in stored.items() if value}


def payment_method_save(*, method: PaymentMethod, credentials: dict[str, str],
                        previous_code: str = "") -> PaymentMethod:
    """Save ``method`` with ``credentials`` merged into the stored ones (an
    empty value keeps what is stored), sealed under the primary key and
    bound to the method's code."""
    with transaction.atomic():
        stored = {}
        if method.pk:
            row = PaymentMethod.objects.select_for_update().get(pk=method.pk)
            stored = credentials_open(code=previous_code or row.code, sealed=row.credentials_sealed)
        merged = {**stored, **{k: v for k, v in credentials.items() if v}}
        keep = SECRET_FIELDS.get(method.provider, ())
        merged = {k: v for k, v in merged.items() if k in keep}
        method.credentials_sealed = credentials_seal(code=method.code, credentials=merged)
        method.updated_at = timezone.now()
        method.save()
    transaction.on_commit(methods_forget)
    return method


def payment_methods_reseal() -> int:
    """Re-seal every method's credentials under the first of
    KEY_ENCRYPTION_KEYS (``manage.py rotate_keys``). Returns how many changed."""
    resealed = 0
    for pk in PaymentMethod.objects.order_by("id").values_list("pk", flat=True):
        with transaction.atomic():
            row = PaymentMethod.objects.select_for_update().get(pk=pk)
            if not row.credentials_sealed or sealed_by_primary(bytes(row.credentials_sealed)):
                continue
            plain = credentials_open(code=row.code, sealed=row.credentials_sealed)
            row.credentials_sealed = credentials_seal(code=row.code, credentials=plain)
            row.save(update_fields=["credentials_sealed"])
            resealed += 1
    methods_forget()
    return resealed
