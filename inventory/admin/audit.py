"""The key audit trail: who acted and from which IP (as every key action records it),
the reason asked before an action, and the read-only list of audit events."""

from django import forms
from django.contrib import admin

from inventory.models import KeyAuditEvent
from riskctl.identity import client_ip


def _actor(request) -> str:
    return f"staff:{request.user.get_username()}"


def _ip(request) -> str | None:
    # The client's address behind TRUSTED_PROXIES, as the rest of the shop sees it.
    return client_ip(request) or None


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Recorded with each key, e.g. 'leaked in chat', 'code rejected'.")


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
