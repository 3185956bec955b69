"""The merchant redemption API: API keys (token shown once), redemptions and activations."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from inventory.admin.audit import ReasonForm, _actor, _ip
from inventory.apikeys import merchant_api_key_revoke, merchant_api_key_token_attach
from inventory.models import KeyActivation, KeyRedemption, MerchantApiKey
from inventory.redemption import RedemptionStateError, key_activation_deactivate, key_redemption_revert


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
