from django.core.management.base import BaseCommand

from payments.services.doctor import FAIL, payments_doctor

MARKS = {"OK": "✓", "WARN": "!", "FAIL": "✗", "INFO": "·"}


class Command(BaseCommand):
    help = ("Check that SITE_URL reaches this shop and that each enabled payment method's credentials work, "
            "and print the fix for each failure. Exit status 1 when something fails.")

    def add_arguments(self, parser):
        parser.add_argument("--method", default="", help="only this payment method id")

    def handle(self, *args, method, **options):
        checks = payments_doctor(method_id=method)
        subject = None
        for check in checks:
            if check.subject != subject:
                subject = check.subject
                self.stdout.write(self.style.MIGRATE_HEADING(subject))
            style = {"OK": self.style.SUCCESS, "FAIL": self.style.ERROR, "WARN": self.style.WARNING}.get(
                check.status, str)
            self.stdout.write(style(f"  {MARKS[check.status]} {check.name}: {check.detail}"))
            if check.fix and check.status != "OK":
                self.stdout.write(f"      fix: {check.fix}")
        failed = [c for c in checks if c.status == FAIL]
        warned = [c for c in checks if c.status == "WARN"]
        self.stdout.write(f"{len(failed)} problem{'s' if len(failed) != 1 else ''}, "
                          f"{len(warned)} warning{'s' if len(warned) != 1 else ''}")
        if failed:
            raise SystemExit(1)
