"""Exports in the admin: the forms (orders, keys), the progress page with its
small JSON endpoint, the one download, and the read-only list of every export
(the audit).

Who may do what: orders with ``shop.view_order`` (the order list's own
permission: the export shows what that list shows, buyer email included),
keys with ``inventory.view_cardkey`` (masked), key plaintext only with
``inventory.export_cardkey``: asking for it without (a crafted POST) is
refused, not quietly downgraded. A progress page and its file are for the
user who started the export, no one else.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import ADDITION, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from exports.formats import WRITERS, ExportTooLarge
from exports.forms import KeyExportForm, OrderExportForm, initial_from_changelist
from exports.models import Export, ExportKind, ExportStatus
from exports.selectors import SOLD
from exports.services import export_download_claim, export_file_read, export_start, export_stream
from riskctl.identity import client_ip
from shop.models import OrderStatus, Product

PLAINTEXT_PERMISSION = "inventory.export_cardkey"
KINDS = {
    "orders": (ExportKind.ORDERS, "shop.view_order", OrderExportForm, gettext_lazy("Export orders")),
    "keys": (ExportKind.KEYS, "inventory.view_cardkey", KeyExportForm, gettext_lazy("Export card keys")),
}


def _attachment(response, export: Export):
    response["Content-Disposition"] = f'attachment; filename="{export.file_name}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def export_state(export: Export) -> dict:
    """What the progress page shows (and its JSON endpoint answers), in the active language."""
    rows, total = f"{export.rows:,}", f"{export.total:,}"
    messages = {
        ExportStatus.QUEUED: _("Waiting for a worker…"),
        ExportStatus.RUNNING: _("%(rows)s of %(total)s rows written") % {"rows": rows, "total": total},
        ExportStatus.READY: _("Ready: %(rows)s rows, %(size)s.") % {"rows": rows, "size": filesizeformat(export.size)},
        ExportStatus.DOWNLOADED: _("Downloaded. The file has been deleted from the server."),
        ExportStatus.EXPIRED: _("Expired: the file was deleted unread. Start the export again."),
        ExportStatus.FAILED: _("Failed. Start the export again."),
        ExportStatus.STREAMED: _("Sent to the browser: %(rows)s rows.") % {"rows": rows},
    }
    return {"status": export.status, "status_label": str(export.get_status_display()), "percent": export.percent,
            "rows": export.rows, "total": export.total, "message": messages[export.status],
            "ready": export.status == ExportStatus.READY,
            "done": export.status not in (ExportStatus.QUEUED, ExportStatus.RUNNING)}


def export_described(export: Export) -> str:
    """The export's filter in words, for its progress page."""
    filters = export.filters
    start, end = filters.get("date_from"), filters.get("date_to")
    days = f"{start or '…'} – {end or '…'}" if start or end else _("any day")
    product = Product.objects.filter(pk=filters.get("product")).first() if filters.get("product") else None
    parts = [str(product or _("All products"))]
    if export.kind == ExportKind.ORDERS:
        when = _("paid") if filters.get("date_field") == "paid" else _("placed")
        statuses = [str(OrderStatus(value).label) for value in filters.get("statuses", []) if value in OrderStatus.values]
        parts += [f"{when}: {days}", ", ".join(statuses) or _("every status"),
                  _("with the buyer's email") if filters.get("include_email") else _("without the buyer's email")]
    else:
        parts += [_("sold keys") if filters.get("which") == SOLD else _("unsold keys"), days,
                  _("keys in plaintext") if export.plaintext else _("keys masked")]
    return " · ".join(parts)


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "actor", "ip", "kind", "format", "plaintext", "filters", "rows", "status")
    list_filter = ("kind", "plaintext", "status", "format")
    search_fields = ("actor",)
    fields = ("created_at", "actor", "ip", "kind", "format", "plaintext", "filters", "language", "total", "rows",
              "size", "status", "finished_at", "expires_at", "downloaded_at", "error")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the audit trail of what left the shop

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("new/<str:what>/", view(self.start_view), name="exports_export_start"),
            path("<int:export_id>/progress/", view(self.progress_view), name="exports_export_progress"),
            path("<int:export_id>/status/", view(self.status_view), name="exports_export_status"),
            path("<int:export_id>/download/", view(require_POST(self.download_view)), name="exports_export_download"),
            *super().get_urls(),
        ]

    def start_view(self, request, what: str):
        if what not in KINDS:
            raise Http404
        kind, permission, form_class, title = KINDS[what]
        if not request.user.has_perm(permission):
            raise PermissionDenied
        allow_plaintext = request.user.has_perm(PLAINTEXT_PERMISSION)
        options = {"allow_plaintext": allow_plaintext} if kind == ExportKind.KEYS else {}
        if request.method == "POST":
            if kind == ExportKind.KEYS and request.POST.get("plaintext") and not allow_plaintext:
                raise PermissionDenied
            form = form_class(request.POST, **options)
            if form.is_valid():
                try:
                    export = export_start(
                        user=request.user, ip=client_ip(request) or None, kind=kind,
                        format=form.cleaned_data["format"], filters=form.filters(),
                        plaintext=bool(form.cleaned_data.get("plaintext")),
                    )
                except ExportTooLarge:
                    form.add_error("format", _("More rows than a spreadsheet holds: choose CSV, or a narrower filter."))
                else:
                    return self._started(request, export)
        else:
            form = form_class(initial=initial_from_changelist(kind=what, query=request.GET), **options)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, "form": form,
                   "what": what, "stream_max": f"{settings.EXPORT_STREAM_MAX_ROWS:,}"}
        return TemplateResponse(request, "admin/exports/export/start.html", context)

    def _started(self, request, export: Export):
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=[export], action_flag=ADDITION, single_object=True,
            change_message=f"{export.kind} {export.format}, {export.total} rows, plaintext: {export.plaintext}, "
                           f"filters: {export.filters}",
        )
        if export.status == ExportStatus.STREAMED:
            # No Content-Length: the file is written as the rows are read.
            response = StreamingHttpResponse(export_stream(export=export),
                                             content_type=WRITERS[export.format].content_type)
            return _attachment(response, export)
        return HttpResponseRedirect(reverse("admin:exports_export_progress", args=[export.pk]))

    def _own(self, request, export_id: int) -> Export:
        # Another user's export is not found, whoever asks.
        return get_object_or_404(Export, pk=export_id, user=request.user)

    def progress_view(self, request, export_id: int):
        export = self._own(request, export_id)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "export": export,
            "title": _("Export #%(id)s: %(kind)s, %(format)s") % {
                "id": export.pk, "kind": export.get_kind_display(), "format": export.get_format_display()},
            "state": export_state(export), "minutes": settings.EXPORT_FILE_MINUTES, "described": export_described(export),
        }
        return TemplateResponse(request, "admin/exports/export/progress.html", context)

    def status_view(self, request, export_id: int):
        response = JsonResponse(export_state(self._own(request, export_id)))
        response["Cache-Control"] = "no-store"
        return response

    def download_view(self, request, export_id: int):
        export = self._own(request, export_id)
        claimed = export_download_claim(export_id=export.pk, user=request.user)
        if claimed is None:
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "export": export,
                       "title": _("Export #%(id)s") % {"id": export.pk}, "state": export_state(export),
                       "minutes": settings.EXPORT_FILE_MINUTES, "described": export_described(export)}
            return TemplateResponse(request, "admin/exports/export/progress.html", context, status=410)
        response = StreamingHttpResponse(export_file_read(export_id=claimed.pk),
                                         content_type=WRITERS[claimed.format].content_type)
        response["Content-Length"] = str(claimed.size)
        return _attachment(response, claimed)
