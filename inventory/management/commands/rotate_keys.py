"""Re-seal every card key, payment-method credential and manual order's answers under the first of KEY_ENCRYPTION_KEYS."""

import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from inventory.models import CardKey
from inventory.services import keys_rotate
from payments.services.methods import payment_methods_reseal
from shop.services.manual import manual_answers_reseal


class Command(BaseCommand):
    help = (
        "Rotate the encryption of stored keys: put the new key first in KEY_ENCRYPTION_KEYS (keep the old "
        "ones after it), run this, then remove the old ones. Safe to re-run; works in short batches."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, batch_size: int, **options):
        total = CardKey.objects.count()
        with tqdm(total=total, unit="key", desc="re-sealing", disable=None, file=sys.stderr) as bar:
            rotated = keys_rotate(batch_size=batch_size, progress=bar.update)
        self.stdout.write(f"{rotated} of {total} keys re-sealed under the primary key")
        # Payment methods' credentials are sealed under the same key ring.
        methods = payment_methods_reseal()
        self.stdout.write(f"{methods} payment methods' credentials re-sealed under the primary key")
        answers = manual_answers_reseal()  # what buyers of manual products filled in
        self.stdout.write(f"{answers} manual orders' answers re-sealed under the primary key")
