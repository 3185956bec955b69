"""Block list consulted at checkout. Scores, rules and review come later (issue 6)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class BlockKind(models.TextChoices):
    EMAIL = "EMAIL", "Email"
    IP = "IP", "IP address"


class BlockEntry(models.Model):
    kind = models.CharField(max_length=10, choices=BlockKind.choices)
    # Normalised: emails lower-cased, IPs in canonical form.
    value = models.CharField(max_length=254)
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "block entries"
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="blockentry_unique"),
            models.CheckConstraint(condition=Q(kind__in=BlockKind.values), name="blockentry_kind_valid"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.value}"
