"""Card key stock. The secret is stored sealed (see ``inventory.sealing``)."""

from django.conf import settings
from django.contrib.postgres.indexes import HashIndex
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from inventory import sealing
from inventory.keyrules import KeyRules


class KeyPolicy(models.Model):
    """How a product's keys are compared and checked, and when stock is low."""

    product = models.OneToOneField("shop.Product", on_delete=models.CASCADE, related_name="key_policy")
    collapse_spaces = models.BooleanField(default=True, help_text="Runs of spaces count as one.")
    casefold = models.BooleanField(default=False, help_text="Upper and lower case count as the same key.")
    strip_separators = models.CharField(
        max_length=20, blank=True, help_text="Characters ignored when comparing keys, e.g. '- ' for dashes and spaces."
    )
    fold_confusables = models.BooleanField(default=False, help_text="0/O and 1/I/L count as the same character.")
    format_regex = models.CharField(
        max_length=200, blank=True, help_text=r"Every key must match, e.g. ^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$"
    )
    low_stock_threshold = models.PositiveIntegerField(
        default=0, help_text="Alert the owner when available keys fall to this many (0: never)."
    )
    # Set when the alert for the current crossing went out; cleared when stock
    # rises above the threshold again: one alert per crossing.
    low_stock_alerted_at = models.DateTimeField(null=True, blank=True)
    activation_limit = models.PositiveIntegerField(
        default=0, help_text="Licence activations (instances) a sold key may have at once (0: no activations)."
    )

    class Meta:
        verbose_name_plural = "key policies"

    def __str__(self):
        return f"Key policy of {self.product_id}"

    @property
    def rules(self) -> KeyRules:
        return KeyRules(
            collapse_spaces=self.collapse_spaces, casefold=self.casefold, strip_separators=self.strip_separators,
            fold_confusables=self.fold_confusables, format_regex=self.format_regex,
        )


class ImportBatch(models.Model):
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="import_batches")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=300)
    lines = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    blank = models.PositiveIntegerField(default=0)
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_keys = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "import batches"

    def __str__(self):
        return f"Import #{self.pk} ({self.added} keys)"


class CardKeyStatus(models.TextChoices):
    AVAILABLE = "AVAILABLE", "Available"
    # Set aside by a checkout for its unpaid order until the hold lapses.
    HELD = "HELD", "Held for an unpaid order"
    RESERVED = "RESERVED", "Reserved"
    DELIVERED = "DELIVERED", "Delivered"
    VOID = "VOID", "Void"


class CardKey(models.Model):
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="card_keys")
    # Authenticated ciphertext of the key; read it through ``secret``.
    secret_sealed = models.BinaryField()
    # HMAC-SHA256 of the normalised key: finds duplicates without decrypting.
    fingerprint = models.CharField(max_length=64)
    # HMAC-SHA256 of the key with case, spaces and dashes folded whatever the
    # policy (keyrules.LOOSE_RULES): how the public check page finds it. Not unique.
    loose_fingerprint = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=10, choices=CardKeyStatus.choices, default=CardKeyStatus.AVAILABLE)
    order_line = models.ForeignKey(
        "shop.OrderLine", on_delete=models.PROTECT, null=True, blank=True, related_name="card_keys"
    )
    # A sale of a reusable product's key: the key it copies (same product, same
    # sealed secret). The copy carries the order line; the key itself stays in
    # stock for the next buyer.
    source = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="copies")
    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, null=True, blank=True, related_name="keys")
    # Line of the import file the key came from: duplicate reports point at it.
    import_line = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    reserved_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            # Copies of a reusable key share its fingerprint: only stock keys are unique.
            models.UniqueConstraint(fields=["product", "fingerprint"], condition=Q(source__isnull=True),
                                    name="cardkey_unique_per_product"),
            # A copy is always a sale: it never sits in stock.
            models.CheckConstraint(condition=Q(source__isnull=True) | ~Q(status__in=["AVAILABLE", "HELD"]),
                                   name="cardkey_copy_is_sold"),
            models.CheckConstraint(condition=Q(status__in=CardKeyStatus.values), name="cardkey_status_valid"),
            # A held, reserved or delivered key always names its order line; a
            # key in stock never does.
            models.CheckConstraint(
                condition=(
                    Q(status__in=[CardKeyStatus.HELD, CardKeyStatus.RESERVED, CardKeyStatus.DELIVERED],
                      order_line__isnull=False)
                    | Q(status=CardKeyStatus.AVAILABLE, order_line__isnull=True)
                    | Q(status=CardKeyStatus.VOID)
                ),
                name="cardkey_line_matches_status",
            ),
        ]
        permissions = [
            ("reveal_cardkey", "Can reveal card key secrets"),
            ("import_cardkey", "Can import card keys"),
            ("void_cardkey", "Can void card keys"),
            ("replace_cardkey", "Can replace a delivered card key"),
            ("export_cardkey", "Can export unsold card keys"),
        ]
        indexes = [
            # Finding a key by its fingerprint, copies of reusable keys too (the
            # unique constraint above covers stock keys only).
            models.Index(fields=["product", "fingerprint"], name="cardkey_product_fp_idx"),
            # The claim reads only available keys of one product, oldest first,
            # ordered by ``id + 0``: an order the primary key cannot give. On
            # ``ORDER BY id`` the planner may walk the primary key and filter,
            # reading every key sold since the last ANALYZE (the oldest keys
            # go first, so they are all in front): a claim that slows down as
            # a flash sale goes on.
            models.Index(
                F("product"), F("id") + 0, name="cardkey_claim_idx", condition=Q(status=CardKeyStatus.AVAILABLE)
            ),
            # Looked up only by equality (the public check page): a hash index
            # keeps 4 bytes a key instead of the 64-character fingerprint, and
            # costs a million-key import less than a second B-tree would.
            HashIndex(fields=["loose_fingerprint"], name="cardkey_loose_fp_idx"),
        ]

    def __str__(self):
        return f"Key #{self.pk} ({self.get_status_display()})"

    @property
    def secret(self) -> str:
        return sealing.secret_open(bytes(self.secret_sealed), product_id=self.product_id)

    @property
    def secret_masked(self) -> str:
        return sealing.secret_mask(self.secret)


class KeyAuditEvent(models.Model):
    """Who did what to a key, when and from where. Never holds the key itself."""

    class Action(models.TextChoices):
        IMPORTED = "IMPORTED", "Imported"
        REVEALED = "REVEALED", "Revealed"
        VOIDED = "VOIDED", "Voided"
        REPLACED = "REPLACED", "Replaced on its order"
        EXPORTED = "EXPORTED", "Exported"
        UNVOIDED = "UNVOIDED", "Returned to stock"
        SOLD = "SOLD", "Sold (reserved for an order line)"
        DELIVERED = "DELIVERED", "Delivered to the buyer"
        RELEASED = "RELEASED", "Released back to stock"
        REDEEMED = "REDEEMED", "Redeemed by the merchant"
        REDEMPTION_REVERTED = "REDEMPTION_REVERTED", "Redemption reverted"
        ACTIVATED = "ACTIVATED", "Licence instance activated"
        DEACTIVATED = "DEACTIVATED", "Licence instance deactivated"

    card_key = models.ForeignKey(CardKey, on_delete=models.PROTECT, related_name="audit_events")
    action = models.CharField(max_length=30, choices=Action.choices)
    actor = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["card_key", "at"], name="keyaudit_key_at_idx")]

    def __str__(self):
        return f"{self.action} key #{self.card_key_id} by {self.actor}"


class MerchantApiKey(models.Model):
    """A merchant's credential for the key verification API. Only a SHA-256 of
    the high-entropy token is stored; the token is shown once, at creation."""

    name = models.CharField(max_length=100)
    # First characters of the token (after "kd_"), shown to tell keys apart and
    # used to find the row; the rest is compared through the hash.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    products = models.ManyToManyField(
        "shop.Product", related_name="merchant_api_keys", help_text="Products whose keys this API key may check."
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "merchant API key"

    def __str__(self):
        return f"{self.name} (kd_{self.prefix}…)"


class KeyRedemption(models.Model):
    """A key used up on the merchant's service. One live redemption per key;
    a staff revert (with a reason) keeps the row and frees the key."""

    card_key = models.ForeignKey(CardKey, on_delete=models.PROTECT, related_name="redemptions")
    api_key = models.ForeignKey(MerchantApiKey, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="redemptions")
    # The merchant's own id for this redemption: a retry with the same id is the same redemption.
    redemption_id = models.CharField(max_length=100)
    redeemer = models.CharField(max_length=150, blank=True, help_text="The merchant's label or id of the user.")
    at = models.DateTimeField(default=timezone.now)
    reverted_at = models.DateTimeField(null=True, blank=True)
    reverted_by = models.CharField(max_length=150, blank=True)
    revert_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["card_key"], condition=Q(reverted_at__isnull=True), name="keyredemption_one_live_per_key"
            ),
        ]

    def __str__(self):
        return f"Redemption {self.redemption_id} of key #{self.card_key_id}"


class KeyActivation(models.Model):
    """A licence instance (machine, seat) a sold key is activated on."""

    card_key = models.ForeignKey(CardKey, on_delete=models.PROTECT, related_name="activations")
    instance_id = models.CharField(max_length=200, help_text="The instance name or fingerprint the app sent.")
    created_at = models.DateTimeField(default=timezone.now)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["card_key", "instance_id"], condition=Q(deactivated_at__isnull=True),
                name="keyactivation_one_live_per_instance",
            ),
        ]

    def __str__(self):
        return f"Activation {self.instance_id} of key #{self.card_key_id}"
