"""Checkout holds become key rows (HELD). The unpaid orders whose hold is live
when this runs held a count; they get their keys set aside here, so they keep
what they were promised."""

from django.db import migrations, models

HOLD_LIVE_ORDERS = """
DO $$
DECLARE line record;
BEGIN
    FOR line IN
        SELECT l.id, l.product_id, l.quantity
        FROM shop_orderline l JOIN shop_order o ON o.id = l.order_id
        WHERE o.status = 'PENDING_PAYMENT' AND o.hold_expires_at > now()
        ORDER BY o.created_at, l.id
    LOOP
        UPDATE inventory_cardkey SET status = 'HELD', order_line_id = line.id, reserved_at = now()
        WHERE id IN (SELECT id FROM inventory_cardkey
                     WHERE product_id = line.product_id AND status = 'AVAILABLE'
                     ORDER BY id LIMIT line.quantity)
          AND (SELECT count(*) FROM inventory_cardkey
               WHERE product_id = line.product_id AND status = 'AVAILABLE') >= line.quantity;
    END LOOP;
END $$;
"""

# Back to count-based holds: the held keys return to stock (before the old
# constraint, which knows no HELD, comes back).
RELEASE_HOLDS = "UPDATE inventory_cardkey SET status = 'AVAILABLE', order_line_id = NULL, reserved_at = NULL WHERE status = 'HELD'"


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0005_cardkey_loose_fingerprint'),
        ('shop', '0010_order_links'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='cardkey',
            name='cardkey_status_valid',
        ),
        migrations.RemoveConstraint(
            model_name='cardkey',
            name='cardkey_line_matches_status',
        ),
        migrations.AlterField(
            model_name='cardkey',
            name='status',
            field=models.CharField(choices=[('AVAILABLE', 'Available'), ('HELD', 'Held for an unpaid order'), ('RESERVED', 'Reserved'), ('DELIVERED', 'Delivered'), ('VOID', 'Void')], default='AVAILABLE', max_length=10),
        ),
        migrations.AddConstraint(
            model_name='cardkey',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['AVAILABLE', 'HELD', 'RESERVED', 'DELIVERED', 'VOID'])), name='cardkey_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='cardkey',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('order_line__isnull', False), ('status__in', ['HELD', 'RESERVED', 'DELIVERED'])), models.Q(('order_line__isnull', True), ('status', 'AVAILABLE')), ('status', 'VOID'), _connector='OR'), name='cardkey_line_matches_status'),
        ),
        migrations.RunSQL(HOLD_LIVE_ORDERS, reverse_sql=RELEASE_HOLDS),
    ]
