"""Admin for the block list."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from riskctl.models import BlockEntry, BlockKind
from riskctl.services import email_normalise, ip_normalise


class BlockEntryForm(forms.ModelForm):
    class Meta:
        model = BlockEntry
        fields = ("kind", "value", "reason", "expires_at")

    def clean(self):
        # Checkout compares normalised identifiers with ``value`` exactly, so an
        # entry typed as "Bad@Example.com" must be stored as "bad@example.com"
        # or it would never match.
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        if not kind or not value:
            return cleaned
        if kind == BlockKind.EMAIL:
            value = email_normalise(value)
            try:
                validate_email(value)
            except ValidationError:
                self.add_error("value", "Enter a valid email address.")
                return cleaned
        elif kind == BlockKind.IP:
            try:
                value = ip_normalise(value)
            except ValueError:
                self.add_error("value", "Enter a valid IPv4 or IPv6 address.")
                return cleaned
        cleaned["value"] = value
        return cleaned


@admin.register(BlockEntry)
class BlockEntryAdmin(admin.ModelAdmin):
    form = BlockEntryForm
    list_display = ("kind", "value", "reason", "created_by", "created_at", "expires_at")
    list_select_related = ("created_by",)
    list_filter = ("kind",)
    search_fields = ("value",)
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
