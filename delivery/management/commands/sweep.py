"""manage.py sweep: one pass of the self-healing sweeper (the worker also runs it periodically)."""

from django.core.management.base import BaseCommand

from shop.services import sweep_run


class Command(BaseCommand):
    help = (
        "Re-enqueue lost deliveries, expire unpaid orders, fill orders waiting for stock and alert on "
        "stuck orders. Safe to run at any time, also while another sweep runs."
    )

    def handle(self, *args, **options):
        report = sweep_run()
        if not report.ran:
            self.stdout.write("another sweep is running; nothing done")
            return
        self.stdout.write(
            f"re-enqueued {report.requeued} deliveries, expired {report.expired} unpaid orders, "
            f"filled {report.filled} orders from stock, {report.stuck} orders stuck"
        )
