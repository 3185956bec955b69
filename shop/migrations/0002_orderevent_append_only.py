"""OrderEvent is append-only: the database refuses UPDATE and DELETE of a row.

(TRUNCATE, used only by test teardown and by operators on purpose, is not a
row-level operation and stays possible.)
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION shop_orderevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'order events are append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER shop_orderevent_append_only
    BEFORE UPDATE OR DELETE ON shop_orderevent
    FOR EACH ROW EXECUTE FUNCTION shop_orderevent_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS shop_orderevent_append_only ON shop_orderevent;
DROP FUNCTION IF EXISTS shop_orderevent_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
