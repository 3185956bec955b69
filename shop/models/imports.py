"""What was brought across from another shop (``manage.py import_from``)."""

from django.db import models
from django.utils import timezone


class ImportRecord(models.Model):
    """One row of another shop (a dujiaoka category, an acg-faka order…) and
    the row it became here: a re-run finds it and leaves it alone. Keys are
    not listed here: their import batch names the source, and each key's
    ``import_line`` is its id in the source."""

    class Entity(models.TextChoices):
        CATEGORY = "CATEGORY", "category"
        PRODUCT = "PRODUCT", "product"
        COUPON = "COUPON", "coupon"
        ORDER = "ORDER", "order"

    source = models.CharField(max_length=40, help_text="The shop it came from: dujiaoka, acg-faka, or the name given.")
    entity = models.CharField(max_length=10, choices=Entity.choices)
    source_id = models.CharField(max_length=64)
    target_id = models.BigIntegerField(help_text="The id of the row here (Category, Product, Coupon or Order).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [  # noqa: RUF012 - Django reads Meta once
            models.UniqueConstraint(fields=["source", "entity", "source_id"], name="importrecord_source_row_unique"),
        ]

    def __str__(self):
        return f"{self.source} {self.entity.lower()} {self.source_id} → #{self.target_id}"
