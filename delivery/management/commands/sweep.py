"""manage.py sweep: the self-healing sweeper (``shop.ops.sweep``), once or in a loop (``--every``)."""

import signal
import threading

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from shop.ops.sweep import sweep_run


class Command(BaseCommand):
    help = (
        "Apply payment notices whose wake-up was lost, re-enqueue lost deliveries, expire unpaid orders, "
        "fill orders waiting for stock and alert on "
        "stuck orders. Safe to run at any time, also while another sweep runs. With --every N it keeps "
        "sweeping every N seconds until stopped: it reads the database, not Redis, so it keeps healing "
        "while Redis or the workers are down."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="sweep every N seconds until stopped")

    def handle(self, *args, every: float, **options):
        if not every:
            self._sweep_once()
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.is_set():
            try:
                self._sweep_once()
            except Exception as exc:  # a database blip must not end the loop
                self.stderr.write(f"sweep failed: {type(exc).__name__}: {exc}")
            close_old_connections()
            stop.wait(every)

    def _sweep_once(self) -> None:
        report = sweep_run()
        if report.applied:
            self.stdout.write(f"applied {report.applied} payment notices that were waiting")
        if not report.ran:
            self.stdout.write("another sweep is running; nothing done")
            return
        self.stdout.write(
            f"re-enqueued {report.requeued} deliveries, expired {report.expired} unpaid orders, "
            f"filled {report.filled} orders from stock, {report.stuck} orders stuck"
        )
