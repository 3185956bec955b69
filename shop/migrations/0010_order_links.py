import django.db.models.deletion
import django.db.models.functions.text
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """Order links staff can revoke (Order.link_version, the LINKS_REVOKED
    event), buyers' back-in-stock requests, email sign-in links (helper C)."""

    dependencies = [
        ("shop", "0009_shop_profile"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="link_version",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="type",
            field=models.CharField(choices=[("CREATED", "Order placed"), ("PAID", "Payment received"), ("PAYMENT_EXTRA", "An extra payment arrived (to refund)"), ("KEYS_RESERVED", "Keys set aside"), ("AWAITING_STOCK", "Waiting for stock"), ("DELIVERY_SENT", "Delivered"), ("DELIVERY_FAILED", "Delivery failed"), ("DELIVERED", "Everything delivered"), ("EXPIRED", "Expired unpaid"), ("STOCK_FILLED", "Stock arrived for this order"), ("KEYS_RELEASED", "Keys returned to stock"), ("KEY_REPLACED", "Key replaced"), ("KEY_REPORTED", "Problem with a key reported"), ("RESEND_REQUESTED", "Resend requested"), ("PAYMENT_REJECTED", "A payment notice was rejected"), ("PAYMENT_ODD", "An unusual payment needs staff attention"), ("REFUND_REQUESTED", "Refund started"), ("REFUNDED", "Refunded"), ("DISPUTE_OPENED", "Payment disputed"), ("REVIEW_OPENED", "Held for review"), ("REVIEW_APPROVED", "Review approved"), ("REVIEW_REJECTED", "Review rejected"), ("MANUAL_COMPLETION", "Payment confirmed by the shop"), ("LINKS_REVOKED", "Order links revoked")], max_length=32),
        ),
        migrations.CreateModel(
            name="SignInLink",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("email", models.EmailField(help_text="Stored lower-case.", max_length=254)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("expires_at", models.DateTimeField()),
                ("used_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "indexes": [models.Index(fields=["email", "created_at"], name="signinlink_email_idx")],
            },
        ),
        migrations.CreateModel(
            name="StockAlertRequest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("email", models.EmailField(help_text="Stored lower-case.", max_length=254)),
                ("language", models.CharField(blank=True, help_text="The buyer's language when they asked.", max_length=10)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("notified_at", models.DateTimeField(blank=True, null=True)),
                ("unsubscribed_at", models.DateTimeField(blank=True, null=True)),
                ("product", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="stock_alerts", to="shop.product")),
            ],
            options={
                "verbose_name": "back-in-stock request",
                "verbose_name_plural": "back-in-stock requests",
                "indexes": [models.Index(condition=models.Q(("notified_at__isnull", True), ("unsubscribed_at__isnull", True)), fields=["product", "id"], name="stockalert_waiting_idx")],
                "constraints": [models.UniqueConstraint(condition=models.Q(("notified_at__isnull", True), ("unsubscribed_at__isnull", True)), fields=("product", "email"), name="stockalert_one_waiting_per_email"), models.CheckConstraint(condition=models.Q(("email", django.db.models.functions.text.Lower("email"))), name="stockalert_email_lower")],
            },
        ),
    ]
