"""Load the demo shop: three products with keys, and an admin login. Idempotent."""

import secrets
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from inventory.selectors import keys_available_count
from inventory.services import keys_import
from shop.models import Product

DEMO_PRODUCTS = [
    {
        "slug": "steam-wallet-50",
        "name": "Steam Wallet Code ¥50",
        "description": "Redeem on Steam: Account → Add funds → Redeem a Steam Gift Card or Wallet Code.",
        "price": Decimal("50.00"),
        "max_per_order": 5,
        "prefix": "STM",
    },
    {
        "slug": "vpn-pro-1y",
        "name": "VPN Pro — 1 year licence",
        "description": "Paste the licence key into the app under Settings → Licence.",
        "price": Decimal("99.00"),
        "max_per_order": 3,
        "prefix": "VPN",
    },
    {
        "slug": "music-vip-30d",
        "name": "Music VIP 30 days",
        "description": "A 30-day membership card. Redeem at the membership centre.",
        "price": Decimal("15.00"),
        "max_per_order": 10,
        "prefix": "VIP",
    },
]
# Top each demo product up to this many available keys.
DEMO_STOCK = 25


class Command(BaseCommand):
    help = "Create the demo products with keys and an admin login (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args, admin_username: str, **options):
        for spec in DEMO_PRODUCTS:
            spec = dict(spec)
            prefix = spec.pop("prefix")
            with transaction.atomic():
                product, created = Product.objects.get_or_create(slug=spec.pop("slug"), defaults=spec)
            missing = DEMO_STOCK - keys_available_count(product=product)
            added = 0
            if missing > 0:
                entries = ((n, self._demo_key(prefix)) for n in range(1, missing + 1))
                added = keys_import(product=product, entries=entries, source="manage.py demo").added
            state = "created" if created else "exists"
            available = keys_available_count(product=product)
            self.stdout.write(f"{product.slug}: {state}, {added} keys added, {available} available")
        self._admin(admin_username)

    @staticmethod
    def _demo_key(prefix: str) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        groups = ("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
        return f"{prefix}-" + "-".join(groups)

    def _admin(self, username: str) -> None:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"admin login: user {username!r} exists (set a new password with "
                f"`manage.py changepassword {username}`)"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(
            f"admin login created: user {username!r}, password {password} (shown once; "
            f"change it with `manage.py changepassword {username}`)"
        ))
