"""Exports from the admin: each one's audit record, progress and file.

An ``Export`` row is written for every export, streamed or built by a job, and
is never deleted: it is the audit trail of what left the shop (who, when,
from which address, which filter, how many rows, with key plaintext or not).
The file of a large export is kept in PostgreSQL as ``ExportPart`` rows (web
and worker processes share no disk), and deleted once downloaded or expired.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ExportKind(models.TextChoices):
    ORDERS = "ORDERS", _("Orders")
    KEYS = "KEYS", _("Card keys")


class ExportFormat(models.TextChoices):
    CSV = "CSV", "CSV"
    XLSX = "XLSX", _("Excel (XLSX)")


class ExportStatus(models.TextChoices):
    # A small set, sent to the browser as it was read.
    STREAMED = "STREAMED", _("Streamed")
    QUEUED = "QUEUED", _("Waiting for a worker")
    RUNNING = "RUNNING", _("Being written")
    READY = "READY", _("Ready to download")
    DOWNLOADED = "DOWNLOADED", _("Downloaded")
    EXPIRED = "EXPIRED", _("Expired")
    FAILED = "FAILED", _("Failed")


class Export(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    # "staff:<username>", kept when the user is deleted.
    actor = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=10, choices=ExportKind.choices)
    format = models.CharField(max_length=10, choices=ExportFormat.choices)
    # The filter as the form cleaned it (dates as ISO strings, product by id):
    # the audit's "what", and what the job reads its rows with.
    filters = models.JSONField(default=dict, blank=True)
    plaintext = models.BooleanField(default=False, help_text="The file holds the keys themselves.")
    # Column headers and labels in the language the export was asked in.
    language = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=12, choices=ExportStatus.choices)
    total = models.PositiveIntegerField(default=0, help_text="Rows the filter matched when the export started.")
    rows = models.PositiveIntegerField(default=0, help_text="Rows written.")
    # The job's place: the last row id written, the file's size so far, the
    # writer's state between jobs (exports.formats).
    position = models.BigIntegerField(default=0)
    size = models.BigIntegerField(default=0)
    writer_state = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ExportStatus.values), name="export_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=ExportKind.values), name="export_kind_valid"),
            models.CheckConstraint(condition=Q(kind="KEYS") | Q(plaintext=False), name="export_plaintext_only_keys"),
        ]
        indexes = [
            # The sweep's look for files to delete and jobs to resume: a few rows at most.
            models.Index(fields=["status"], condition=Q(status__in=["QUEUED", "RUNNING", "READY", "DOWNLOADED"]),
                         name="export_live_idx"),
        ]

    def __str__(self):
        return f"Export #{self.pk} ({self.kind}, {self.format})"

    @property
    def file_name(self) -> str:
        stamp = timezone.localtime(self.created_at).strftime("%Y%m%d-%H%M")
        return f"{self.kind.lower()}-{stamp}-{self.pk}.{self.format.lower()}"

    @property
    def percent(self) -> int:
        if self.status in (ExportStatus.READY, ExportStatus.DOWNLOADED, ExportStatus.STREAMED):
            return 100
        if not self.total:
            return 0
        # 100 only once the file is complete, not when the last row is written.
        return min(99, self.rows * 100 // self.total)


class ExportPart(models.Model):
    """A piece of an export's file, in order; the file is their concatenation."""

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="parts")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["export", "seq"], name="exportpart_unique_seq")]

    def __str__(self):
        return f"Part {self.seq} of export #{self.export_id}"
