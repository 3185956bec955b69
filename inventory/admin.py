"""Admin for card key stock.

The plaintext of a key never appears in a list, a key's page or a log (only
the masked form). Owner actions — import, void (with a reason), return to
stock, replace on an order, reveal, export — each need their own permission
(``inventory.<action>_cardkey``) and write a KeyAuditEvent (who, when, from
which IP, what; never the key).
"""

import csv
import io

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from inventory.apikeys import merchant_api_key_revoke, merchant_api_key_token_attach
from inventory.keyrules import format_regex_check
from inventory.models import (
    CardKey,
    CardKeyStatus,
    ImportBatch,
    KeyActivation,
    KeyAuditEvent,
    KeyPolicy,
    KeyRedemption,
    MerchantApiKey,
)
from inventory.redemption import RedemptionStateError, key_activation_deactivate, key_redemption_revert
from inventory.sealing import SealError
from inventory.services import (
    KeyStateError,
    KeysUnavailable,
    import_batch_void,
    key_entries,
    keys_audit,
    keys_unvoid,
    keys_void,
)
from riskctl.identity import client_ip
from shop.models import Product
from shop.services import OrderTransitionError, order_fill_from_stock, order_key_replace, product_stock_import

REVEAL_LIMIT = 50
UNREADABLE = "(cannot be decrypted)"
DELIMITERS = {"newline": "\n", "comma": ",", "semicolon": ";", "tab": "\t"}


def _masked(key: CardKey) -> str:
    # A key sealed under a retired encryption key must not take the whole list down.
    try:
        return key.secret_masked
    except SealError:
        return UNREADABLE


def _actor(request) -> str:
    return f"staff:{request.user.get_username()}"


def _ip(request) -> str | None:
    # The client's address behind TRUSTED_PROXIES, as the rest of the shop sees it.
    return client_ip(request) or None


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Recorded with each key, e.g. 'leaked in chat', 'code rejected'.")


@admin.register(CardKey)
class CardKeyAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "masked_secret", "status", "order_no", "batch", "created_at", "delivered_at")
    list_select_related = ("product", "order_line__order", "batch")
    list_filter = ("status", "product")
    search_fields = ("order_line__order__order_no",)
    search_help_text = "Search by order number."
    # secret_sealed and fingerprint are never shown.
    fields = (
        "product", "masked_secret", "status", "order_link", "batch", "import_line", "created_at", "reserved_at",
        "delivered_at", "voided_at", "void_reason",
    )
    readonly_fields = ("masked_secret", "order_link")
    actions = ("reveal_keys", "void_available_keys", "unvoid_keys", "replace_on_order", "export_csv")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # A key's page is view-only: saving the form would write back every
        # column read earlier and could undo a reservation made meanwhile.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        # Stock leaves through "void", which keeps the row for the audit.
        return False

    def _has(self, request, action: str) -> bool:
        return request.user.has_perm(f"inventory.{action}_cardkey")

    def has_reveal_permission(self, request):
        return self._has(request, "reveal")

    def has_void_permission(self, request):
        return self._has(request, "void")

    def has_replace_permission(self, request):
        return self._has(request, "replace")

    def has_export_permission(self, request):
        return self._has(request, "export")

    @admin.display(description="secret")
    def masked_secret(self, obj):
        return _masked(obj)

    @admin.display(description="order", ordering="order_line__order__order_no")
    def order_no(self, obj):
        if obj.order_line_id is None:
            return None
        return obj.order_line.order.order_no

    @admin.display(description="order")
    def order_link(self, obj):
        if obj.order_line_id is None:
            return None
        order = obj.order_line.order
        return format_html('<a href="{}">{}</a>', reverse("admin:shop_order_change", args=[order.pk]), order.order_no)

    def _reason_step(self, request, queryset, *, action: str, title: str):
        """Ask for a reason first; return it once given (None while asking)."""
        if "apply" in request.POST:
            form = ReasonForm(request.POST)
            if form.is_valid():
                return form.cleaned_data["reason"], None
        else:
            form = ReasonForm()
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": title, "form": form,
            "action": action, "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        }
        return None, TemplateResponse(request, "admin/inventory/cardkey/reason.html", context)

    @admin.action(description="Reveal selected keys", permissions=["reveal"])
    def reveal_keys(self, request, queryset):
        keys = list(queryset.select_related("order_line__order").order_by("id")[: REVEAL_LIMIT + 1])
        if len(keys) > REVEAL_LIMIT:
            self.message_user(
                request, f"Select at most {REVEAL_LIMIT} keys to reveal; nothing was revealed.", messages.ERROR
            )
            return None
        # The audit trail is written before any plaintext leaves the server.
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=keys, action_flag=CHANGE, change_message="revealed"
        )
        keys_audit(key_ids=[k.pk for k in keys], action=KeyAuditEvent.Action.REVEALED, actor=_actor(request),
                   ip=_ip(request))
        rows = []
        for key in keys:
            try:
                secret = key.secret
            except SealError:
                secret = UNREADABLE
            rows.append({"key": key, "secret": secret, "order_no": self.order_no(key)})
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Revealed card keys", "rows": rows}
        return TemplateResponse(request, "admin/inventory/cardkey/reveal.html", context)

    @admin.action(description="Void selected available keys (with a reason)", permissions=["void"])
    def void_available_keys(self, request, queryset):
        reason, asking = self._reason_step(request, queryset, action="void_available_keys", title="Void keys")
        if asking:
            return asking
        voided_ids = keys_void(key_ids=queryset.values_list("pk", flat=True), reason=reason,
                               actor=_actor(request), ip=_ip(request))
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=CardKey.objects.filter(pk__in=voided_ids).order_by("id"),
            action_flag=CHANGE, change_message="voided",
        )
        self.message_user(request, f"{len(voided_ids)} of {queryset.count()} selected keys voided.", messages.SUCCESS)
        return None

    @admin.action(description="Return selected voided keys to stock", permissions=["void"])
    def unvoid_keys(self, request, queryset):
        ids = keys_unvoid(key_ids=queryset.values_list("pk", flat=True), actor=_actor(request), ip=_ip(request))
        products = set(CardKey.objects.filter(pk__in=ids).values_list("product_id", flat=True))
        filled = sum(order_fill_from_stock(product_id=product_id) for product_id in products)
        self.message_user(
            request, f"{len(ids)} keys back in stock; {filled} waiting orders filled.", messages.SUCCESS
        )

    @admin.action(description="Replace selected delivered keys on their orders", permissions=["replace"])
    def replace_on_order(self, request, queryset):
        delivered = queryset.filter(status=CardKeyStatus.DELIVERED)
        reason, asking = self._reason_step(request, delivered, action="replace_on_order", title="Replace keys")
        if asking:
            return asking
        replaced, problems = 0, []
        for key_id, order_id in delivered.values_list("pk", "order_line__order_id"):
            try:
                order_key_replace(order_id=order_id, key_id=key_id, actor=_actor(request), reason=reason, ip=_ip(request))
                replaced += 1
            except KeysUnavailable:
                problems.append(f"key #{key_id}: no stock to replace it")
            except (KeyStateError, OrderTransitionError) as exc:
                problems.append(f"key #{key_id}: {exc}")
        self.message_user(request, f"{replaced} keys replaced.", messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.ERROR)

    @admin.action(description="Export selected unsold keys as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        keys = queryset.filter(status=CardKeyStatus.AVAILABLE).select_related("product").order_by("id")
        ids = list(keys.values_list("pk", flat=True))
        keys_audit(key_ids=ids, action=KeyAuditEvent.Action.EXPORTED, actor=_actor(request), ip=_ip(request))

        def rows():
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(["id", "product", "key", "imported_at"])
            for key in keys.iterator(chunk_size=1000):
                writer.writerow([key.pk, key.product.slug, key.secret, key.created_at.isoformat()])
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="unsold-keys.csv"'
        response["Cache-Control"] = "no-store"
        return response


class ImportForm(forms.Form):
    product = forms.ModelChoiceField(queryset=Product.objects.order_by("name"))
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


@admin.register(KeyAuditEvent)
class KeyAuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "action", "card_key", "actor", "ip", "detail")
    list_filter = ("action",)
    search_fields = ("actor", "card_key__id", "card_key__order_line__order__order_no")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MerchantApiKeyForm(forms.ModelForm):
    class Meta:
        model = MerchantApiKey
        fields = ("name", "products")


@admin.register(MerchantApiKey)
class MerchantApiKeyAdmin(admin.ModelAdmin):
    """Create (the token is shown once, on the page that follows), scope and
    revoke merchant API keys. Only a hash of the token is stored."""

    form = MerchantApiKeyForm
    list_display = ("name", "token_prefix", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    filter_horizontal = ("products",)
    actions = ("revoke_keys",)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: redemptions point at the key

    @admin.display(description="key")
    def token_prefix(self, obj):
        return f"kd_{obj.prefix}_…"

    def save_model(self, request, obj, form, change):
        if not change:
            # The token lives only in this request: stashed for response_add, never stored.
            request._merchant_api_token = merchant_api_key_token_attach(api_key=obj)
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        token = getattr(request, "_merchant_api_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Merchant API key created", "api_key": obj, "token": token}
        response = TemplateResponse(request, "admin/inventory/merchantapikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset):
        revoked = merchant_api_key_revoke(api_key_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"{revoked} API keys revoked.", messages.SUCCESS)


@admin.register(KeyRedemption)
class KeyRedemptionAdmin(admin.ModelAdmin):
    list_display = ("at", "card_key", "redemption_id", "redeemer", "api_key", "reverted_at", "reverted_by",
                    "revert_reason")
    list_select_related = ("card_key", "api_key")
    list_filter = ("reverted_at",)
    search_fields = ("redemption_id", "redeemer", "card_key__id")
    actions = ("revert_redemptions",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revert selected redemptions (with a reason)", permissions=["change"])
    def revert_redemptions(self, request, queryset):
        if "apply" in request.POST:
            form = ReasonForm(request.POST)
            if form.is_valid():
                reverted, problems = 0, []
                for pk in queryset.values_list("pk", flat=True):
                    try:
                        key_redemption_revert(redemption_pk=pk, reason=form.cleaned_data["reason"],
                                              actor=_actor(request), ip=_ip(request))
                        reverted += 1
                    except RedemptionStateError as exc:
                        problems.append(f"redemption #{pk}: {exc}")
                self.message_user(request, f"{reverted} redemptions reverted.", messages.SUCCESS)
                for problem in problems:
                    self.message_user(request, problem, messages.ERROR)
                return None
        else:
            form = ReasonForm()
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Revert redemptions",
            "form": form, "action": "revert_redemptions",
            "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        }
        return TemplateResponse(request, "admin/inventory/keyredemption/reason.html", context)


@admin.register(KeyActivation)
class KeyActivationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "card_key", "instance_id", "deactivated_at", "deactivated_by")
    list_select_related = ("card_key",)
    list_filter = ("deactivated_at",)
    search_fields = ("instance_id", "card_key__id", "card_key__order_line__order__order_no")
    actions = ("deactivate",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Deactivate selected instances", permissions=["change"])
    def deactivate(self, request, queryset):
        freed = 0
        for pk in queryset.filter(deactivated_at__isnull=True).values_list("pk", flat=True):
            try:
                key_activation_deactivate(activation_pk=pk, actor=_actor(request), ip=_ip(request))
                freed += 1
            except RedemptionStateError:
                pass  # deactivated meanwhile
        self.message_user(request, f"{freed} activations deactivated.", messages.SUCCESS)
