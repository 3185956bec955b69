"""Check every invariant of DESIGN.md; exit 1 with the offending ids on any violation."""

from django.core.management.base import BaseCommand, CommandError

from shop.ops.audit import audit_run

SHOWN_IDS = 50


class Command(BaseCommand):
    help = "Check the invariants of DESIGN.md against the database and print a table."

    def handle(self, *args, **options):
        results = audit_run()
        rows = [("#", "invariant", "status", "offending ids")]
        for result in results:
            ids = result.offending[:SHOWN_IDS]
            more = f" (+{len(result.offending) - SHOWN_IDS} more)" if len(result.offending) > SHOWN_IDS else ""
            rows.append((str(result.number), result.title, "OK" if result.ok else "VIOLATED", " ".join(ids) + more))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        violated = [r for r in results if not r.ok]
        if violated:
            summary = "; ".join(f"{r.number}: {' '.join(r.offending)}" for r in violated)
            raise CommandError(f"invariants violated — {summary}", returncode=1)
        self.stdout.write(self.style.SUCCESS("all invariants hold"))
