"""Stock in: the import page (paste or upload, then the per-line report) and import batches."""

import io

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from inventory.admin.audit import _actor, _ip
from inventory.models import ImportBatch
from inventory.services import import_batch_void, key_entries
from shop.models import Product
from shop.services import product_stock_import

DELIMITERS = {"newline": "\n", "comma": ",", "semicolon": ";", "tab": "\t"}


class ImportForm(forms.Form):
    # A manual product sells no stock: staff deliver it from the queue.
    product = forms.ModelChoiceField(queryset=Product.objects.exclude(kind="manual").order_by("name"))
    keys = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, "cols": 60}), required=False,
                           label="Paste keys")
    file = forms.FileField(required=False, help_text=".txt or .csv, UTF-8", label="…or upload a file")
    delimiter = forms.ChoiceField(
        choices=[("newline", "one key per line"), ("comma", "comma"), ("semicolon", "semicolon"), ("tab", "tab"),
                 ("custom", "custom…")],
    )
    custom_delimiter = forms.CharField(max_length=5, required=False, strip=False)

    def clean(self):
        data = super().clean()
        if not data.get("keys") and not data.get("file"):
            raise forms.ValidationError("Paste keys or choose a file.")
        if data.get("keys") and data.get("file"):
            raise forms.ValidationError("Paste keys or choose a file, not both.")
        upload = data.get("file")
        if upload and not upload.name.lower().endswith((".txt", ".csv")):
            self.add_error("file", "Upload a .txt or .csv file.")
        if data.get("delimiter") == "custom" and not data.get("custom_delimiter"):
            self.add_error("custom_delimiter", "Enter the character that separates keys.")
        return data

    def separator(self) -> str:
        choice = self.cleaned_data["delimiter"]
        return self.cleaned_data["custom_delimiter"] if choice == "custom" else DELIMITERS[choice]


def _upload_lines(upload):
    """Lines of an uploaded file, decoded as UTF-8 chunk by chunk (no full read)."""
    for number, raw in enumerate(upload, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        yield raw.decode("utf-8")


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "source", "created_by", "created_at", "lines", "added", "duplicates", "invalid",
                    "blank", "voided_at", "voided_keys")
    list_select_related = ("product", "created_by")
    list_filter = ("product",)
    actions = ("void_unsold",)

    def has_add_permission(self, request):
        return request.user.has_perm("inventory.import_cardkey")

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_void_permission(self, request):
        return request.user.has_perm("inventory.void_cardkey")

    def add_view(self, request, form_url="", extra_context=None):
        """The import page: paste or upload, then the per-line report."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            lines = _upload_lines(upload) if upload else io.StringIO(form.cleaned_data["keys"])
            try:
                report = product_stock_import(
                    product=form.cleaned_data["product"],
                    entries=key_entries(lines, delimiter=form.separator()),
                    source=f"admin upload: {upload.name}" if upload else "admin paste",
                    created_by=request.user,
                )
            except UnicodeDecodeError:
                form.add_error("file", "FILE_NOT_UTF8: the file is not UTF-8 text.")
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Import keys",
            "form": form, "report": report, "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/inventory/importbatch/import.html", context)

    @admin.action(description="Void the unsold keys of selected imports", permissions=["void"])
    def void_unsold(self, request, queryset):
        total = sum(import_batch_void(batch_id=pk, actor=_actor(request), ip=_ip(request))
                    for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{total} unsold keys voided.", messages.SUCCESS)
