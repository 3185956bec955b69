"""manage.py redeliver: send orders' SAME keys again, by order numbers or filters."""

import argparse
import sys
from datetime import datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from delivery.admin import recipient_mask
from delivery.models import Channel, DeliveryStatus
from delivery.selectors import deliveries_select
from delivery.services import delivery_enqueue, delivery_send
from inventory.services import KeysUnavailable
from shop.models import KeyReport, KeyReportStatus
from shop.selectors import order_nos_missing
from shop.services import ResendNotAllowed, key_report_replace, order_resend

ACTOR = "ops:redeliver"


def date_or_time(value: str) -> datetime:
    """``--since``/``--until``: today, yesterday (local midnight), a date or an
    ISO date-time. argparse turns the error into a clean usage message (a
    CommandError under call_command)."""
    words = {"today": 0, "yesterday": 1}
    if value.strip().lower() in words:
        day = timezone.localdate() - timedelta(days=words[value.strip().lower()])
        return timezone.make_aware(datetime.combine(day, time.min))
    try:  # a well-formed but impossible date (2026-13-01) raises ValueError
        moment = parse_datetime(value)
        if moment is None and (day := parse_date(value)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise argparse.ArgumentTypeError(
            f"not a date: {value!r} (use today, yesterday, 2026-11-22 or 2026-11-22T08:00)"
        )
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Send deliveries again with the SAME keys (never new ones): by order numbers and/or filters. "
        "Sends inline; exits 1 when something could not be sent (it stays queued for retries)."
    )

    def add_arguments(self, parser):
        parser.add_argument("order_nos", nargs="*", metavar="ORDER_NO")
        parser.add_argument("--status", choices=DeliveryStatus.values, help="delivery status")
        parser.add_argument("--since", type=date_or_time,
                            help="deliveries created at or after (today, yesterday, a date or ISO date-time)")
        parser.add_argument("--until", type=date_or_time,
                            help="deliveries created before (today, yesterday, a date or ISO date-time)")
        parser.add_argument("--product", metavar="SLUG")
        parser.add_argument("--channel", choices=[Channel.EMAIL, Channel.SMS])
        parser.add_argument("--failed-only", action="store_true", help="only dead letters (same as --status FAILED)")
        parser.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
        parser.add_argument(
            "--replace-invalid", action="store_true",
            help="first replace the keys buyers reported as not working (open reports): void and hand over a new one",
        )
        parser.add_argument("--yes", action="store_true", help="do not ask before replacing keys")

    def handle(self, *args, order_nos, status, since, until, product, channel, failed_only, dry_run,
               replace_invalid, yes, **options):
        if failed_only:
            if status and status != DeliveryStatus.FAILED:
                raise CommandError("--failed-only contradicts --status")
            status = DeliveryStatus.FAILED
        if not (order_nos or status or since or until or product or channel):
            raise CommandError("name order numbers or give at least one filter (redelivering everything is refused)")
        if missing := order_nos_missing(order_nos=order_nos):
            raise CommandError(f"{'order' if len(missing) == 1 else 'orders'} {', '.join(missing)} not found",
                               returncode=1)
        deliveries = list(
            deliveries_select(
                order_nos=order_nos, status=status, since=since, until=until, product_slug=product, channel=channel
            )
        )
        reports = (
            list(KeyReport.objects.filter(order_id__in={d.order_id for d in deliveries}, status=KeyReportStatus.OPEN)
                 .select_related("order").order_by("id"))
            if replace_invalid else []
        )
        if dry_run:
            self._table(deliveries)
            for report in reports:
                self.stdout.write(f"would replace key #{report.card_key_id} of {report.order.order_no}: {report.reason}")
            self.stdout.write(f"{len(deliveries)} deliveries would be sent again (dry run: nothing sent)")
            return
        unreplaced = self._replace(reports, confirmed=yes) if reports else []
        sent, failed, skipped = 0, [], 0
        for delivery in tqdm(deliveries, desc="redeliver", unit="delivery", file=self.stderr._out):
            try:
                if not order_resend(
                    order_id=delivery.order_id, actor=ACTOR, channels=[delivery.channel], enqueue=False
                ):
                    skipped += 1
                    continue
            except ResendNotAllowed:
                skipped += 1
                continue
            try:
                outcome = delivery_send(delivery_id=delivery.pk)
            except Exception as exc:  # transient: the queue keeps trying on its schedule
                delivery_enqueue(delivery_id=delivery.pk)
                outcome = f"retrying ({type(exc).__name__})"
            if outcome == DeliveryStatus.SENT:
                sent += 1
            else:
                failed.append((delivery, outcome))
        for delivery, outcome in failed:
            self.stderr.write(f"not sent: {delivery.order.order_no} {delivery.channel}: {outcome}")
        self.stdout.write(f"{len(deliveries)} selected: {sent} sent, {len(failed)} not sent, {skipped} skipped")
        if failed or unreplaced:
            raise CommandError(
                f"{len(failed)} deliveries could not be sent, {len(unreplaced)} reported keys not replaced", returncode=1
            )

    def _replace(self, reports, *, confirmed: bool) -> list:
        """Void and replace the reported keys (the resend then sends the new
        ones); return the reports that could not be replaced (no stock)."""
        if not confirmed:
            if not sys.stdin.isatty():
                raise CommandError("REPLACE_NEEDS_CONFIRMATION: replacing keys needs --yes when not run interactively")
            answer = input(f"Replace {len(reports)} reported key(s)? Each is voided and a new one handed over. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("REPLACE_CANCELLED: nothing replaced, nothing sent")
        short = []
        for report in reports:
            try:
                key_report_replace(report_id=report.pk, actor=ACTOR)
            except KeysUnavailable:
                short.append(report)
        self.stdout.write(f"{len(reports) - len(short)} reported keys replaced")
        for report in short:
            self.stderr.write(f"not replaced (OUT_OF_STOCK): key #{report.card_key_id} of {report.order.order_no}")
        return short

    def _table(self, deliveries) -> None:
        rows = [("ORDER", "CHANNEL", "TO", "STATUS", "ATTEMPTS", "LAST ERROR")]
        rows += [
            (d.order.order_no, d.channel, recipient_mask(d.recipient), d.status, str(d.attempts), d.last_error[:60])
            for d in deliveries
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            self.stdout.write("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip())
