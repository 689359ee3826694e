"""On PostgreSQL the database itself refuses to edit or delete imported ledger rows.

The ORM already refuses (AppendOnlyQuerySet, LedgerRow.save/delete); the trigger
covers raw SQL and any other client. TRUNCATE (used by test teardown) is untouched.
"""

from django.db import migrations

LEDGER_TABLES = [
    "exchange_account", "exchange_asset", "exchange_market", "exchange_fill", "exchange_withdrawal",
    "exchange_deposit", "exchange_journalentry", "exchange_balancesnapshot", "exchange_positionsnapshot",
    "exchange_markprice",
]

FUNCTION = """
CREATE OR REPLACE FUNCTION exchange_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '%% rows are imported history and cannot be changed (%% refused)', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    for table in LEDGER_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION exchange_refuse_change()"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in LEDGER_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS exchange_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("exchange", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
