"""manage.py sweep: the self-healing sweeper (``shop.ops.sweep``), once or in a loop (``--every``)."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from delivery.services import lease_holder_new
from shop.ops.sweep import SweepReport, sweep_release, sweep_run


class Command(BaseCommand):
    help = (
        "Apply payment notices whose wake-up was lost, re-enqueue lost deliveries, expire unpaid orders, "
        "fill orders waiting for stock and alert on "
        "stuck orders. Safe to run at any time, also while another sweep runs: one sweeper leads, the one "
        "holding the sweep lease (a row in PostgreSQL). With --every N it keeps sweeping every N seconds "
        "until stopped, renewing the lease each pass: it reads the database, not Redis, so it keeps healing "
        "while Redis or the workers are down."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="sweep every N seconds until stopped")
        parser.add_argument(
            "--lease-seconds", type=float, default=0,
            help="how long the loop's lease lasts past each renewal; longer than --every "
                 "(default: SWEEP_LEASE_SECONDS, at least 3 × --every)",
        )

    def handle(self, *args, every: float, lease_seconds: float, **options):
        if not every:
            report = sweep_run(lease_seconds=lease_seconds or None)
            self._write(report, leading=False)
            if report.failed:
                raise CommandError(f"{len(report.failed)} sweep step(s) failed; the others ran")
            return
        lease_seconds = lease_seconds or max(settings.SWEEP_LEASE_SECONDS, 3 * every)
        if lease_seconds <= every:
            raise CommandError("--lease-seconds must be longer than --every: the leader renews once a pass")
        holder = lease_holder_new()
        self.stdout.write(f"sweeper {holder}: sweeping every {every:g} s, lease {lease_seconds:g} s")
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        leading = False
        while not stop.is_set():
            try:
                report = sweep_run(holder=holder, lease_seconds=lease_seconds)
                leading = self._write(report, leading=leading)
            except Exception as exc:  # noqa: BLE001 - a database blip must not end the loop
                self.stderr.write(f"sweep failed: {type(exc).__name__}: {exc}")
            self.stdout.flush()
            close_old_connections()
            stop.wait(every)
        try:
            sweep_release(holder=holder)
        except Exception as exc:  # noqa: BLE001 - the database is gone: the lease expires on its own
            self.stderr.write(f"lease not released: {type(exc).__name__}: {exc}")

    def _write(self, report: SweepReport, *, leading: bool) -> bool:
        """Print what the pass did; returns whether this sweeper leads now."""
        if report.applied:
            self.stdout.write(f"applied {report.applied} payment notices that were waiting")
        if not report.ran:
            if leading:
                self.stdout.write("lost the sweep lease to another sweeper; following")
            self.stdout.write("another sweeper holds the lease; nothing done")
            return False
        if report.lost_lease:
            self.stdout.write("lost the sweep lease to another sweeper mid-pass; stopped")
            return False
        for failure in report.failed:
            self.stderr.write(f"sweep failed in step {failure}")
        self.stdout.write(
            f"re-enqueued {report.requeued} deliveries, expired {report.expired} unpaid orders, "
            f"filled {report.filled} orders from stock, {report.stuck} orders stuck, "
            f"{report.overdue} manual orders overdue"
        )
        return True
