"""Manual products (代充): the fields the owner asks the buyer to fill in, the
buyer's sealed answers, and the staff's fulfilment queue (a view of orders)."""

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shop.models.catalogue import Product
from shop.models.localised import _localised_either
from shop.models.orders import Order, OrderLine


class ManualFieldType(models.TextChoices):
    # Lower case, as the API lists them (like ``Product.kind``).
    TEXT = "text", _("Text")
    NUMBER = "number", _("Number")
    SELECT = "select", _("Choice from a list")


def pattern_validate(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(_("Not a regular expression: %(error)s"), params={"error": exc}) from None


class ManualField(models.Model):
    """One question a manual product's checkout asks, e.g. the game account."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="manual_fields")
    position = models.PositiveIntegerField(default=0, help_text=_("Lower comes first."))
    key = models.SlugField(max_length=40, help_text=_("The name the API sends the answer under, e.g. account."))
    label = models.CharField(max_length=100)
    label_zh = models.CharField(max_length=100, blank=True, help_text=_("Chinese (Simplified) label."))
    type = models.CharField(max_length=10, choices=ManualFieldType.choices, default=ManualFieldType.TEXT)
    choices = models.TextField(blank=True, help_text=_("For a choice from a list: one choice a line."))
    required = models.BooleanField(default=True)
    max_length = models.PositiveIntegerField(null=True, blank=True, help_text=_("Text: the most characters."))
    min_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    max_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    pattern = models.CharField(
        _("check (regular expression)"), max_length=200, blank=True, validators=[pattern_validate],
        help_text=_("Text: a regular expression the answer must match somewhere, e.g. ^[1-9][0-9]{4,11}$ for a "
                    "QQ number (anchor it with ^ and $ to match all of it)."))
    pattern_message = models.CharField(_("message when it does not match"), max_length=200, blank=True,
                                       help_text=_("What the buyer is told when the answer does not match."))
    pattern_message_zh = models.CharField(_("message when it does not match (Chinese)"), max_length=200,
                                          blank=True)
    help_text = models.CharField(max_length=200, blank=True)
    help_text_zh = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["product", "key"], name="manualfield_key_unique_per_product"),
            models.CheckConstraint(condition=Q(type__in=ManualFieldType.values), name="manualfield_type_valid"),
        ]

    def __str__(self):
        return f"{self.label} ({self.key})"

    @property
    def display_label(self) -> str:
        return _localised_either(self, "label")[0]

    @property
    def display_help_text(self) -> str:
        return _localised_either(self, "help_text")[0]

    @property
    def display_pattern_message(self) -> str:
        return _localised_either(self, "pattern_message")[0]

    @property
    def choice_list(self) -> list[str]:
        return [line.strip() for line in self.choices.splitlines() if line.strip()]


class ManualAnswers(models.Model):
    """What the buyer filled in for an order line, sealed like card keys (it
    may hold a game account's password): ``shop.services.manual``."""

    order_line = models.OneToOneField(OrderLine, on_delete=models.PROTECT, related_name="manual_answers")
    answers_sealed = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "manual answers"

    def __str__(self):
        return f"Answers of line {self.order_line_id}"


class ManualQueueOrder(Order):
    """The staff's fulfilment queue: paid orders of manual products waiting
    for a human (``Order.status`` PREPARING), in the admin."""

    class Meta:
        proxy = True
        verbose_name = _("manual order to fulfil")
        verbose_name_plural = _("manual fulfilment queue")
