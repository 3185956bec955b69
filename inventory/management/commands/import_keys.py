"""Import card keys for a product from a file, one key per line."""

import sys

from django.core.management.base import BaseCommand, CommandError

from inventory.services import keys_import
from shop.models import Product


class Command(BaseCommand):
    help = "Import keys for a product: one key per line (blank lines skipped, duplicates refused). FILE '-' reads stdin."

    def add_arguments(self, parser):
        parser.add_argument("--product", required=True, help="product slug")
        parser.add_argument("file", help="path to a UTF-8 text file, or - for stdin")

    def handle(self, *args, product: str, file: str, **options):
        try:
            target = Product.objects.get(slug=product)
        except Product.DoesNotExist:
            raise CommandError(f"PRODUCT_NOT_FOUND: no product with slug {product!r}") from None
        try:
            stream = sys.stdin if file == "-" else open(file, encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"FILE_UNREADABLE: {exc.strerror}: {file}") from None
        try:
            with stream:
                result = keys_import(product=target, lines=stream)
        except UnicodeDecodeError as exc:
            raise CommandError(f"FILE_NOT_UTF8: {file} is not UTF-8 text (byte {exc.start})") from None
        self.stdout.write(
            f"{target.slug}: {result.added} added, {result.duplicates} duplicate, {result.blank} blank "
            f"({result.total} lines)"
        )
