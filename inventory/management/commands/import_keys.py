"""Import card keys for a product from a file (streamed, with a progress bar)."""

import os
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inventory.services import key_entries
from shop.models import Product
from shop.services import product_stock_import

# Line-level problems printed; the report in the admin/ImportBatch keeps counts.
ISSUES_SHOWN = 50
DELIMITERS = {"newline": "\n", "comma": ",", "semicolon": ";", "tab": "\t"}


def _decoded_lines(binary, bar):
    """UTF-8 lines of a binary stream, advancing the progress bar by bytes."""
    for number, raw in enumerate(binary):
        bar.update(len(raw))
        if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # byte order mark from spreadsheet exports
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"FILE_NOT_UTF8: line {number + 1} is not UTF-8 text (byte {exc.start})") from None


class Command(BaseCommand):
    help = (
        "Import keys for a product: one key per line (or split by --delimiter). Blank lines are skipped; "
        "duplicates and keys not matching the product's format are refused and reported by line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--product", required=True, help="product slug")
        parser.add_argument(
            "--delimiter", default="newline",
            help="newline (default), comma, semicolon, tab, or any literal string that separates keys on a line",
        )
        parser.add_argument("file", help="path to a UTF-8 text or CSV file, or - for stdin")

    def handle(self, *args, product: str, delimiter: str, file: str, **options):
        try:
            target = Product.objects.get(slug=product)
        except Product.DoesNotExist:
            raise CommandError(f"PRODUCT_NOT_FOUND: no product with slug {product!r}") from None
        if target.kind == "manual":
            raise CommandError(f"PRODUCT_MANUAL: {product!r} is delivered by hand from the queue; it takes no keys")
        separator = DELIMITERS.get(delimiter, delimiter)
        if not separator:
            raise CommandError("DELIMITER_INVALID: the delimiter cannot be empty")
        try:
            binary = sys.stdin.buffer if file == "-" else open(file, "rb")
        except OSError as exc:
            raise CommandError(f"FILE_UNREADABLE: {exc.strerror}: {file}") from None
        total = None if file == "-" else os.path.getsize(file)
        source = f"manage.py import_keys {'stdin' if file == '-' else os.path.basename(file)}"
        with binary, tqdm(total=total, unit="B", unit_scale=True, desc="importing", disable=None,
                          file=sys.stderr) as bar:
            report = product_stock_import(
                product=target, entries=key_entries(_decoded_lines(binary, bar), delimiter=separator), source=source,
            )
        for issue in report.issues[:ISSUES_SHOWN]:
            self.stdout.write(f"line {issue.line}: {issue.code} {issue.detail}")
        hidden = report.duplicates + report.invalid - min(len(report.issues), ISSUES_SHOWN)
        if hidden > 0:
            self.stdout.write(f"… and {hidden} more (see import #{report.batch_id} in the admin)")
        self.stdout.write(f"{target.slug}: import #{report.batch_id}: {report.summary()}")
