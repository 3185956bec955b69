"""The identifier indexes of RiskEvent become partial (WHERE x <> ''): see
RiskEvent.Meta. Built concurrently before the full ones are dropped, so a live
shop keeps taking orders and keeps an index to look buyers up by throughout."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models
from django.db.models import Q

IDENTIFIERS = ("email", "ip", "device", "phone")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("riskctl", "0003_default_rules"),
    ]

    operations = [
        *(AddIndexConcurrently(
            model_name="riskevent",
            index=models.Index(condition=~Q(**{name: ""}), fields=[name, "at"], name=f"riskevent_{name}_given_idx"),
        ) for name in IDENTIFIERS),
        *(RemoveIndexConcurrently(model_name="riskevent", name=f"riskevent_{name}_at_idx") for name in IDENTIFIERS),
    ]
