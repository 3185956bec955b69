"""The record of each periodic run (the sweep's last run, read by /healthz)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from delivery.models import SweepRun


def sweep_run_record(*, name: str, started_at: datetime, result: dict) -> SweepRun:
    run, _ = SweepRun.objects.update_or_create(
        name=name, defaults={"started_at": started_at, "finished_at": timezone.now(), "result": result}
    )
    return run
