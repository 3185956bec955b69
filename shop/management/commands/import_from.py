"""Bring a dujiaoka or acg-faka shop across: catalogue, coupons, keys, past orders."""

import sys
from zoneinfo import ZoneInfoNotFoundError

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from shop.importers.mysql import MysqlError, MysqlSource
from shop.importers.run import SOURCES, shop_import
from shop.importers.sqldump import DumpError, DumpSource


class _Bars:
    """One progress bar per step, on stderr (none when it is not a terminal)."""

    def __init__(self):
        self.phase, self.bar = None, None

    def __call__(self, phase: str, n: int) -> None:
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = tqdm(desc=phase, unit=" rows", disable=None, file=sys.stderr, leave=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Command(BaseCommand):
    help = (
        "Import categories, products, coupons, keys (sealed; duplicates reported) and past orders (as history: "
        "nothing is sent again) from a dujiaoka or acg-faka shop, read from its SQL dump or its MySQL database. "
        "Re-running is safe: what came across before is skipped. Start with --dry-run."
    )

    def add_arguments(self, parser):
        parser.add_argument("shop", choices=sorted(SOURCES), help="which shop the data comes from")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dump", help="its SQL dump (mysqldump, Navicat, phpMyAdmin; .sql or .sql.gz)")
        source.add_argument("--mysql", help="its database: mysql://user@host[:port]/database "
                                            "(the password in MYSQL_PWD or in the URL); needs PyMySQL")
        parser.add_argument("--prefix", default=None,
                            help="its table prefix (default: none for dujiaoka, acg_ for acg-faka)")
        parser.add_argument("--name", default="", help="its name here (default: the shop's kind); give each "
                                                       "shop its own when bringing two of one kind")
        parser.add_argument("--source-timezone", default="",
                            help="the time zone its dates are in (default: this shop's TIME_ZONE)")
        parser.add_argument("--dry-run", action="store_true", help="report what would come across; write nothing")

    def handle(self, *args, shop, dump, mysql, prefix, name, source_timezone, dry_run, **options):
        bars = _Bars()
        try:
            source = DumpSource(dump) if dump else MysqlSource(mysql)
            summary = shop_import(kind=shop, source=source, prefix=prefix, label=name[:40], timezone=source_timezone,
                                  dry_run=dry_run, progress=bars)
        except (DumpError, MysqlError) as exc:
            raise CommandError(f"{exc.code}: {exc}") from None
        except ZoneInfoNotFoundError:
            raise CommandError(f"TIMEZONE_UNKNOWN: no time zone named {source_timezone!r}") from None
        finally:
            bars.close()
        for line in summary.lines():
            self.stdout.write(line)
