"""Admin for the delivery outbox: read-only rows (the worker and services
write them), two actions (resend, mark failed) and links to the RQ dashboard;
owner alerts, which staff acknowledge (list action or the alert's own page)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_POST
from django_rq.settings import QUEUES_MAP

from delivery.alerts import owner_alert_channels, owner_alerts_acknowledge
from delivery.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OwnerAlert,
    SweepRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from delivery.services import QUEUE, delivery_dead_letter
from delivery.webhooks import webhook_resend
from shop.admin.readonly import ReadOnlyAdminMixin
from shop.services import ResendNotAllowed, order_resend

LAST_ERROR_CHARS = 80


def recipient_mask(recipient: str) -> str:
    """``buyer@example.com`` → ``b***@example.com``; a phone number keeps its last 4 digits."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{recipient[-4:]}" if len(recipient) > 4 else "***"


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("resend", "number", "outcome", "started_at", "duration_ms", "error", "provider_message_id")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("id")


def _staff(request) -> str:
    return f"staff:{request.user.get_username()}"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "order", "channel", "masked_recipient", "status", "attempts", "short_last_error", "sent_at", "job_link",
    )
    list_select_related = ("order",)
    list_filter = ("channel", "status")
    search_fields = ("order__order_no", "recipient")
    fields = (
        "order", "channel", "recipient", "status", "attempts", "resends", "last_error", "provider_message_id",
        "created_at", "last_attempt_at", "sending_started_at", "sent_at", "job_link", "batch_job_id",
    )
    readonly_fields = ("job_link",)
    inlines = [DeliveryAttemptInline]
    actions = ["resend", "mark_failed"]
    change_list_template = "delivery/admin/delivery_change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "rq_dashboard_url": reverse("rq_home")}
        return super().changelist_view(request, extra_context=extra_context)

    @admin.display(description="job")
    def job_link(self, obj):
        if obj.channel == "INBOX" or obj.pk is None:
            return self.get_empty_value_display()
        url = reverse("rq_job_detail", args=[QUEUES_MAP[QUEUE], obj.job_id])
        return format_html('<a href="{}">{}</a>', url, obj.job_id)

    @admin.action(description="Resend the same keys (selected deliveries)")
    def resend(self, request, queryset):
        queued, refused = 0, 0
        for delivery in queryset.exclude(channel="INBOX").order_by("id"):
            try:
                resent = order_resend(order_id=delivery.order_id, actor=_staff(request), channels=[delivery.channel])
                queued += len(resent)
            except ResendNotAllowed:
                refused += 1
        self.message_user(request, f"{queued} deliveries queued to be sent again.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{refused} skipped: their orders have no delivered keys.", messages.WARNING)

    @admin.action(description="Mark failed (stop retrying the selected pending deliveries)")
    def mark_failed(self, request, queryset):
        failed = sum(
            delivery_dead_letter(delivery_id=pk, reason=f"marked failed by {_staff(request)}")
            for pk in queryset.filter(status=DeliveryStatus.PENDING).order_by("id").values_list("pk", flat=True)
        )
        self.message_user(request, f"{failed} deliveries marked failed.", messages.SUCCESS)

    @admin.display(description="recipient", ordering="recipient")
    def masked_recipient(self, obj):
        if not obj.recipient:
            return self.get_empty_value_display()
        return recipient_mask(obj.recipient)

    @admin.display(description="last error")
    def short_last_error(self, obj):
        return Truncator(obj.last_error).chars(LAST_ERROR_CHARS)


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request, model_admin):
        return [("no", "Not acknowledged"), ("yes", "Acknowledged")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(acknowledged_at__isnull=self.value() == "no")
        return queryset


@admin.register(OwnerAlert)
class OwnerAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at", "kind", "subject", "occurrences", "last_seen_at", "sent", "acknowledged_by", "acknowledged_at",
    )
    list_select_related = ("acknowledged_by",)
    list_filter = (AcknowledgedFilter, "kind")
    search_fields = ("subject", "dedupe_key")
    fields = (
        "kind", "subject", "body", "dedupe_key", "occurrences", "created_at", "last_seen_at", "sent",
        "acknowledgement",
    )
    readonly_fields = ("sent", "acknowledgement")
    actions = ("acknowledge",)
    change_form_template = "delivery/admin/owneralert_change_form.html"

    def has_acknowledge_permission(self, request) -> bool:
        return self.has_view_permission(request)

    @admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        done = owner_alerts_acknowledge(alert_ids=list(queryset.values_list("pk", flat=True)), user=request.user)
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("<int:alert_id>/acknowledge/", self.admin_site.admin_view(self.acknowledge_view),
                 name="delivery_owneralert_acknowledge"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def acknowledge_view(self, request, alert_id: int):
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        alert = get_object_or_404(OwnerAlert, pk=alert_id)
        done = owner_alerts_acknowledge(alert_ids=[alert.pk], user=request.user)
        self.message_user(request, "Alert acknowledged." if done else "The alert was already acknowledged.",
                          messages.SUCCESS if done else messages.WARNING)
        return redirect("admin:delivery_owneralert_change", alert.pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        alert = self.get_object(request, object_id)
        can_acknowledge = alert is not None and alert.acknowledged_at is None and self.has_acknowledge_permission(request)
        extra_context = {
            **(extra_context or {}),
            "acknowledge_url": reverse("admin:delivery_owneralert_acknowledge", args=[alert.pk]) if can_acknowledge else "",
        }
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj):
        if obj.sent_at is not None:
            return obj.sent_at
        if obj.suppressed:
            return "not sent: over the hourly limit for its kind"
        if not any(owner_alert_channels().values()):
            return "no recipients configured"
        return self.get_empty_value_display()

    @admin.display(description="acknowledged")
    def acknowledgement(self, obj):
        if obj.acknowledged_at is None:
            return "Not acknowledged"
        who = obj.acknowledged_by.get_username() if obj.acknowledged_by else "a deleted user"
        return f"Acknowledged by {who} at {obj.acknowledged_at:%Y-%m-%d %H:%M}"


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "started_at", "finished_at", "result")
    fields = ("name", "started_at", "finished_at", "result")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "event_list", "active", "description", "created_at")
    list_filter = ("active",)
    fields = ("url", "secret", "events", "active", "description")

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.events) or "all"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("event", "endpoint", "status", "attempts", "response_code", "last_error", "created_at", "sent_at")
    list_select_related = ("endpoint",)
    list_filter = ("status", "event")
    fields = (
        "endpoint", "event", "status", "attempts", "response_code", "last_error", "payload",
        "created_at", "last_attempt_at", "sent_at",
    )
    actions = ["send_again"]

    @admin.action(description="Send the selected webhooks again")
    def send_again(self, request, queryset):
        sent = sum(webhook_resend(delivery_id=pk) for pk in queryset.order_by("id").values_list("pk", flat=True))
        self.message_user(request, f"{sent} webhook(s) will be sent again.", messages.SUCCESS)
