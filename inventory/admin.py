"""Admin for card key stock.

The plaintext of a key never appears in the list or on the key's page (only
the masked form). Superusers can reveal up to ``REVEAL_LIMIT`` selected keys
through an explicit action, which writes one admin LogEntry per key first.
Keys are added by ``manage.py import_keys``; the only change allowed here is
voiding keys still in stock.
"""

from cryptography.fernet import InvalidToken
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from inventory.models import CardKey
from inventory.services import keys_void

REVEAL_LIMIT = 50
UNREADABLE = "(cannot be decrypted)"


def _masked(key: CardKey) -> str:
    # A key sealed under a retired encryption key must not take the whole list down.
    try:
        return key.secret_masked
    except InvalidToken:
        return UNREADABLE


@admin.register(CardKey)
class CardKeyAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "masked_secret", "status", "order_no", "created_at", "delivered_at")
    list_select_related = ("product", "order_line__order")
    list_filter = ("status", "product")
    search_fields = ("order_line__order__order_no",)
    search_help_text = "Search by order number."
    # secret_sealed and fingerprint are never shown.
    fields = ("product", "masked_secret", "status", "order_link", "created_at", "reserved_at", "delivered_at")
    readonly_fields = ("masked_secret", "order_link")
    actions = ("reveal_keys", "void_available_keys")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # A key's page is view-only: saving the form would write back every
        # column read earlier and could undo a reservation made meanwhile. The
        # list-level permission stays, for the void action.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        # Stock leaves through "void", which keeps the row for the audit.
        return False

    def has_reveal_permission(self, request):
        # Django has no model permission for this (models.py defines none), so
        # revealing is for superusers only.
        return request.user.is_superuser and self.has_view_permission(request)

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
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:shop_order_change", args=[order.pk]), order.order_no
        )

    @admin.action(description="Reveal selected keys", permissions=["reveal"])
    def reveal_keys(self, request, queryset):
        if not self.has_reveal_permission(request):
            raise PermissionDenied
        keys = list(queryset.order_by("id")[: REVEAL_LIMIT + 1])
        if len(keys) > REVEAL_LIMIT:
            self.message_user(
                request, f"Select at most {REVEAL_LIMIT} keys to reveal; nothing was revealed.", messages.ERROR
            )
            return None
        # The audit trail is written before any plaintext leaves the server.
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=keys, action_flag=CHANGE, change_message="revealed"
        )
        rows = []
        for key in keys:
            try:
                secret = key.secret
            except InvalidToken:
                secret = UNREADABLE
            rows.append({"key": key, "secret": secret, "order_no": self.order_no(key)})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Revealed card keys",
            "rows": rows,
        }
        return TemplateResponse(request, "admin/inventory/cardkey/reveal.html", context)

    @admin.action(description="Void selected available keys", permissions=["change"])
    def void_available_keys(self, request, queryset):
        with transaction.atomic():
            voided_ids = keys_void(key_ids=queryset.values_list("pk", flat=True))
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=CardKey.objects.filter(pk__in=voided_ids).order_by("id"),
                action_flag=CHANGE,
                change_message="voided",
            )
        voided = len(voided_ids)
        self.message_user(request, f"{voided} of {queryset.count()} selected keys voided.", messages.SUCCESS)
