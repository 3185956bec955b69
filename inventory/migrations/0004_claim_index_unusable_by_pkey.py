# The claim's index on (product, id + 0) for available keys replaces the one on
# (product, id), which the planner could pass over for the primary key (see
# CardKey.Meta.indexes). The new index is built before the old one goes.

import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0003_key_api'),
        ('shop', '0005_buyer_side'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='cardkey',
            index=models.Index(models.F('product'), django.db.models.expressions.CombinedExpression(models.F('id'), '+', models.Value(0)), condition=models.Q(('status', 'AVAILABLE')), name='cardkey_claim_idx'),
        ),
        migrations.RemoveIndex(
            model_name='cardkey',
            name='cardkey_available_idx',
        ),
    ]
