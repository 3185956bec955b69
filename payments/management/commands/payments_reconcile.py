from datetime import timedelta

from django.core.management.base import BaseCommand

from payments.services import payments_reconcile


class Command(BaseCommand):
    help = "Ask the payment providers about unpaid orders and complete those that were paid without a notify."

    def add_arguments(self, parser):
        parser.add_argument("--provider", default="", help="only this payment method id (e.g. epay, alipay, wechat, usdt, stripe, or one added in the admin)")
        parser.add_argument("--min-age", type=int, default=2, help="skip payments opened less than this many minutes ago")
        parser.add_argument("--max-age", type=int, default=7 * 24 * 60, help="skip payments older than this many minutes")

    def handle(self, *args, provider, min_age, max_age, **options):
        result = payments_reconcile(
            provider_id=provider, min_age=timedelta(minutes=min_age), max_age=timedelta(minutes=max_age)
        )
        self.stdout.write(
            f"checked {result.checked}, completed {len(result.completed)}, refused {len(result.refused)}, "
            f"not paid or no answer {result.unanswered}"
        )
        for reference in result.completed:
            self.stdout.write(f"completed {reference}")
        for reference, code in result.refused.items():
            self.stdout.write(f"refused {reference}: {code}")
