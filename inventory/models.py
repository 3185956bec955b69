"""Card key stock. The secret is stored sealed (see ``inventory.sealing``)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from inventory import sealing


class CardKeyStatus(models.TextChoices):
    AVAILABLE = "AVAILABLE", "Available"
    RESERVED = "RESERVED", "Reserved"
    DELIVERED = "DELIVERED", "Delivered"
    VOID = "VOID", "Void"


class CardKey(models.Model):
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="card_keys")
    # Authenticated ciphertext of the key; read it through ``secret``.
    secret_sealed = models.BinaryField()
    # HMAC-SHA256 of the normalised key: finds duplicates without decrypting.
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=CardKeyStatus.choices, default=CardKeyStatus.AVAILABLE)
    order_line = models.ForeignKey(
        "shop.OrderLine", on_delete=models.PROTECT, null=True, blank=True, related_name="card_keys"
    )
    created_at = models.DateTimeField(default=timezone.now)
    reserved_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "fingerprint"], name="cardkey_unique_per_product"),
            models.CheckConstraint(condition=Q(status__in=CardKeyStatus.values), name="cardkey_status_valid"),
            # A reserved or delivered key always names its order line; a key in
            # stock never does.
            models.CheckConstraint(
                condition=(
                    Q(status__in=[CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED], order_line__isnull=False)
                    | Q(status=CardKeyStatus.AVAILABLE, order_line__isnull=True)
                    | Q(status=CardKeyStatus.VOID)
                ),
                name="cardkey_line_matches_status",
            ),
        ]
        indexes = [
            # The claim reads only available keys of one product, oldest first.
            models.Index(
                fields=["product", "id"], name="cardkey_available_idx", condition=Q(status=CardKeyStatus.AVAILABLE)
            ),
        ]

    def __str__(self):
        return f"Key #{self.pk} ({self.get_status_display()})"

    @property
    def secret(self) -> str:
        return sealing.secret_open(bytes(self.secret_sealed))

    @property
    def secret_masked(self) -> str:
        return sealing.secret_mask(self.secret)
