"""Staff roles as groups, and, on PostgreSQL, the database's own guards:

- the audit trail's tables refuse UPDATE and DELETE (TRUNCATE, used by test teardown, is untouched);
- an audit record takes its id through claims_audit_next_id(), which first takes a shared
  advisory lock held until its transaction ends: the sealer (claims/services/audit.py) sees in
  pg_locks every transaction that may still commit a record with a lower id, and waits for those
  alone, so no writer ever waits for the sealer or for another writer;
- nobody is put in `finance` and in `support` or `approver` at once.
"""

from django.db import migrations

AUDIT_WRITER_LOCK = 4242001  # also in claims/services/audit.py

AUDIT_TABLES = ["claims_auditrecord", "claims_audithash", "claims_auditseal"]

FORWARD_SQL = f"""
CREATE OR REPLACE FUNCTION claims_refuse_audit_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: %% of %% refused', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

ALTER TABLE claims_auditrecord ALTER COLUMN id DROP IDENTITY IF EXISTS;
CREATE SEQUENCE IF NOT EXISTS claims_auditrecord_id_seq OWNED BY claims_auditrecord.id;
SELECT setval('claims_auditrecord_id_seq', COALESCE((SELECT max(id) FROM claims_auditrecord), 0) + 1, false);
CREATE OR REPLACE FUNCTION claims_audit_next_id() RETURNS bigint AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({AUDIT_WRITER_LOCK});
    RETURN nextval('claims_auditrecord_id_seq');
END;
$$ LANGUAGE plpgsql;
ALTER TABLE claims_auditrecord ALTER COLUMN id SET DEFAULT claims_audit_next_id();

CREATE OR REPLACE FUNCTION claims_refuse_finance_with_approving() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
        WHERE ug.user_id = NEW.user_id AND g.name = 'finance'
    ) AND EXISTS (
        SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
        WHERE ug.user_id = NEW.user_id AND g.name IN ('support', 'approver')
    ) THEN
        RAISE EXCEPTION 'finance excludes support and approver: user %% would hold both', NEW.user_id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER auth_user_groups_roles_exclusive AFTER INSERT OR UPDATE ON auth_user_groups
    DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION claims_refuse_finance_with_approving();
""" + "".join(
    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION claims_refuse_audit_change();\n" for table in AUDIT_TABLES)

BACKWARD_SQL = "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n" for table in AUDIT_TABLES) + """
DROP TRIGGER IF EXISTS auth_user_groups_roles_exclusive ON auth_user_groups;
DROP FUNCTION IF EXISTS claims_refuse_finance_with_approving();
ALTER TABLE claims_auditrecord ALTER COLUMN id SET DEFAULT nextval('claims_auditrecord_id_seq');
DROP FUNCTION IF EXISTS claims_audit_next_id();
DROP FUNCTION IF EXISTS claims_refuse_audit_change();
"""


def database_guards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD_SQL)


def database_guards_removed(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD_SQL)


def roles(apps, schema_editor):
    from claims.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [("claims", "0005_one_audit_trail"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("exchange", "0002_append_only_trigger")]
    operations = [
        migrations.RunPython(database_guards, database_guards_removed),
        migrations.RunPython(roles, migrations.RunPython.noop),
    ]
