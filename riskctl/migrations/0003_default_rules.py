"""The starting rule set and global thresholds; owners tune them in the admin."""

from decimal import Decimal

from django.db import migrations

# code, description, feature, operator, threshold, action, points
RULES = [
    ("velocity-email-1h", "Many orders from one email in an hour", "orders_email_1h", ">=", 5, "SCORE", 30),
    ("velocity-ip-1h", "Many orders from one IP in an hour", "orders_ip_1h", ">=", 10, "SCORE", 30),
    ("velocity-device-1h", "Many orders from one device in an hour", "orders_device_1h", ">=", 5, "SCORE", 35),
    ("linked-emails-device", "Several emails on one device", "emails_per_device_24h", ">=", 4, "SCORE", 50),
    ("linked-emails-device-farm", "An account farm on one device", "emails_per_device_24h", ">=", 10, "BLOCK", 0),
    ("linked-emails-ip", "Many emails from one IP", "emails_per_ip_24h", ">=", 8, "SCORE", 30),
    ("card-testing-ip", "Card testing: failed payments from one IP", "failed_payments_ip_1h", ">=", 5, "BLOCK", 0),
    ("card-testing-device", "Card testing: failed payments from one device", "failed_payments_device_1h", ">=", 5,
     "BLOCK", 0),
    ("failed-payments-email", "Repeated failed payments by one email", "failed_payments_email_24h", ">=", 3, "SCORE",
     40),
    ("disposable-email", "Throw-away email address", "disposable_email", "==", 1, "SCORE", 25),
    ("amount-jump", "Far above what this buyer paid before", "amount_vs_history", ">=", 5, "SCORE", 20),
    ("new-buyer-bulk", "A new buyer buying many keys", "new_buyer_quantity", ">=", 5, "SCORE", 20),
    ("disputes", "The buyer disputed a payment before", "disputes", ">=", 1, "SCORE", 60),
    ("trusted-buyer", "Trusted returning buyer", "trusted_buyer", "==", 1, "SCORE", -50),
]


def forwards(apps, schema_editor):
    Rule = apps.get_model("riskctl", "Rule")
    Thresholds = apps.get_model("riskctl", "Thresholds")
    for code, description, feature, op, threshold, action, points in RULES:
        Rule.objects.get_or_create(code=code, defaults=dict(
            description=description, feature=feature, operator=op, threshold=Decimal(threshold), action=action,
            points=points,
        ))
    if not Thresholds.objects.filter(product__isnull=True).exists():
        Thresholds.objects.create(review_at=50, block_at=80)


def backwards(apps, schema_editor):
    apps.get_model("riskctl", "Rule").objects.filter(code__in=[r[0] for r in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("riskctl", "0002_rules_lists_assessments")]

    operations = [migrations.RunPython(forwards, backwards)]
