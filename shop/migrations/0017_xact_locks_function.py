from django.db import migrations

# Transaction-level advisory locks on several keys, one after the other in the
# order given (a PL/pgSQL loop: guaranteed, unlike the evaluation order of
# several lock calls in one select list). shop.services.unpaid_cap passes its
# keys sorted, so two checkouts never wait on each other in a cycle.
CREATE = """
CREATE FUNCTION kamidrop_xact_locks(keys text[]) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    key text;
BEGIN
    FOREACH key IN ARRAY keys LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(key, 0));
    END LOOP;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("shop", "0016_manualfield_ordering")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP FUNCTION kamidrop_xact_locks(text[]);"),
    ]
