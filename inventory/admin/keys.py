"""Card keys: the masked list and a key's page, and the owner actions on selected keys
(reveal, void, return to stock, replace on an order). Exports (CSV, XLSX; masked, or
plaintext with ``inventory.export_cardkey``) start from this list's "Export…" button:
the ``exports`` app."""

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from inventory.admin.audit import ReasonForm, _actor, _ip
from inventory.models import CardKey, CardKeyStatus, KeyAuditEvent
from inventory.sealing import SealError
from inventory.services import KeyStateError, KeysUnavailable, keys_audit, keys_unvoid, keys_void
from shop.services import OrderTransitionError, order_fill_from_stock, order_key_replace

REVEAL_LIMIT = 50
UNREADABLE = "(cannot be decrypted)"


def _masked(key: CardKey) -> str:
    # A key sealed under a retired encryption key must not take the whole list down.
    try:
        return key.secret_masked
    except SealError:
        return UNREADABLE


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
    actions = ("reveal_keys", "void_available_keys", "unvoid_keys", "replace_on_order")

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
