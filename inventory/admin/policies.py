"""Key policies: how a product's keys are compared, their format, the low-stock threshold."""

from django import forms
from django.contrib import admin

from inventory.keyrules import format_regex_check
from inventory.models import KeyPolicy


class KeyPolicyForm(forms.ModelForm):
    class Meta:
        model = KeyPolicy
        fields = "__all__"

    def clean_format_regex(self):
        pattern = self.cleaned_data["format_regex"]
        if pattern and (problem := format_regex_check(pattern)):
            raise forms.ValidationError(problem)
        return pattern


@admin.register(KeyPolicy)
class KeyPolicyAdmin(admin.ModelAdmin):
    form = KeyPolicyForm
    list_display = ("product", "casefold", "strip_separators", "fold_confusables", "format_regex",
                    "low_stock_threshold", "low_stock_alerted_at")
    list_select_related = ("product",)
    readonly_fields = ("low_stock_alerted_at",)
