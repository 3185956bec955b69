# The public check page finds a key whatever its case, spaces and dashes
# (keyrules.LOOSE_RULES), also for products whose policy compares keys
# exactly: a second, non-unique fingerprint. Keys already in stock get theirs
# here (decrypted in memory, a chunk at a time); one that cannot be opened
# keeps "" and is found only the exact way.

from django.contrib.postgres.indexes import HashIndex
from django.db import migrations, models

CHUNK = 2000


def loose_fingerprints_fill(apps, schema_editor):
    from inventory import sealing
    from inventory.keyrules import LOOSE_RULES

    CardKey = apps.get_model("inventory", "CardKey")
    last_id = 0
    while True:
        keys = list(CardKey.objects.filter(pk__gt=last_id, loose_fingerprint="").order_by("pk")
                    .only("pk", "product_id", "secret_sealed")[:CHUNK])
        if not keys:
            return
        last_id = keys[-1].pk
        filled = []
        for key in keys:
            try:
                plaintext = sealing.secret_open(key.secret_sealed, product_id=key.product_id)
            except sealing.SealError:
                continue
            key.loose_fingerprint = sealing.secret_fingerprint(LOOSE_RULES.normalise(plaintext.strip()))
            filled.append(key)
        CardKey.objects.bulk_update(filled, ["loose_fingerprint"])


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0004_claim_index_unusable_by_pkey'),
    ]

    operations = [
        migrations.AddField(
            model_name='cardkey',
            name='loose_fingerprint',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.RunPython(loose_fingerprints_fill, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name='cardkey',
            index=HashIndex(fields=['loose_fingerprint'], name='cardkey_loose_fp_idx'),
        ),
    ]
