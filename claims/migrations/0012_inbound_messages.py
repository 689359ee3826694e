"""E-mail intake: received messages, kept as they came; answers that thread under them.

On PostgreSQL a trigger keeps what was received as it was received: an UPDATE naming the raw
bytes, their checksum or how they came is refused, and so is any DELETE (TRUNCATE, used by test
teardown, is untouched). What parsing found is written by UPDATEs that name only its own columns.
"""

import claims.models.claims
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


RECEIVED_COLUMNS = "raw, sha256, size, source, esp, mailbox, place, place_key, envelope_sender, received_at"
FORWARD_SQL = f"""
CREATE OR REPLACE FUNCTION claims_refuse_inbound_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'a received message is kept as received: %% of %% refused', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER claims_inboundmessage_as_received BEFORE UPDATE OF {RECEIVED_COLUMNS} OR DELETE
    ON claims_inboundmessage FOR EACH ROW EXECUTE FUNCTION claims_refuse_inbound_change();
"""
BACKWARD_SQL = """
DROP TRIGGER IF EXISTS claims_inboundmessage_as_received ON claims_inboundmessage;
DROP FUNCTION IF EXISTS claims_refuse_inbound_change();
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

    dependencies = [
        ('claims', '0011_item_queue_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='InboundMessage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('raw', models.BinaryField(help_text='The message exactly as received.')),
                ('sha256', models.CharField(max_length=64)),
                ('size', models.PositiveBigIntegerField()),
                ('source', models.CharField(choices=[('webhook', 'Webhook'), ('mailbox', 'Mailbox')], max_length=8)),
                ('esp', models.CharField(blank=True, help_text='The ESP whose webhook posted it.', max_length=32)),
                ('mailbox', models.TextField(blank=True, help_text='The mbox, Maildir or folder it was imported from.')),
                ('place', models.TextField(blank=True, help_text="Where in the mailbox: a file name, a Maildir key, or an mbox message's position and SHA-256; the ESP's event id.")),
                ('place_key', models.CharField(blank=True, max_length=64, null=True)),
                ('envelope_sender', models.TextField(blank=True, help_text='The envelope sender the ESP reported (empty: a bounce); null when not told.', null=True)),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('message_key', models.CharField(max_length=64)),
                ('attempts', models.PositiveSmallIntegerField(default=0, help_text='Times the intake task took it.')),
                ('parsed_at', models.DateTimeField(blank=True, null=True)),
                ('outcome', models.CharField(blank=True, choices=[('duplicate', 'Duplicate'), ('ignored', 'Ignored'), ('unparseable_kept', 'Unparseable Kept'), ('reply', 'Reply'), ('new_claim', 'New Claim'), ('unverified', 'Unverified'), ('no_account', 'No Account')], max_length=16, null=True)),
                ('original_key', models.CharField(blank=True, max_length=64, null=True)),
                ('message_id', models.TextField(blank=True, help_text='Normalised: without angle brackets.', null=True)),
                ('thread_ids', models.JSONField(blank=True, default=list, help_text='In-Reply-To, then References.')),
                ('from_address', models.TextField(blank=True)),
                ('from_name', models.TextField(blank=True)),
                ('subject', models.TextField(blank=True)),
                ('is_verified', models.BooleanField(help_text="Our receiving server's DMARC pass for From's domain.", null=True)),
                ('ignored_reason', models.CharField(blank=True, max_length=16)),
                ('user_id', models.BigIntegerField(blank=True, help_text='The account the outcome concerns.', null=True)),
                ('text', models.TextField(blank=True, help_text='The visible new text, forwarded text included; never rendered unescaped.')),
                ('extracted', models.JSONField(blank=True, default=dict, help_text='What the text states, as the export writes it.')),
                ('attachments', models.JSONField(blank=True, default=list, help_text='Decoded names, content types, sizes.')),
                ('problems', models.JSONField(blank=True, default=list)),
            ],
            options={
                'ordering': ['-id'],
                'permissions': [('parse_again_inboundmessage', 'Parse an unparseable message again')],
            },
        ),
        migrations.AddField(
            model_name='notification',
            name='from_email',
            field=models.CharField(blank=True, help_text='Blank: DEFAULT_FROM_EMAIL.', max_length=320),
        ),
        migrations.AddField(
            model_name='notification',
            name='in_reply_to',
            field=models.CharField(blank=True, help_text='The Message-ID it answers.', max_length=998),
        ),
        # Messages sent before have no Message-ID of ours on record: blank, not one shared value.
        migrations.AddField(
            model_name='notification',
            name='message_id',
            field=models.CharField(default='', help_text='Its Message-ID, without brackets.', max_length=255),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='notification',
            name='message_id',
            field=models.CharField(default=claims.models.claims.outgoing_message_id, help_text='Its Message-ID, without brackets.', max_length=255),
        ),
        migrations.AddField(
            model_name='notification',
            name='references',
            field=models.TextField(blank=True, help_text='Message-IDs of the thread, blank-separated.'),
        ),
        migrations.AddField(
            model_name='notification',
            name='subject_suffix',
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AlterField(
            model_name='notification',
            name='user_id',
            field=models.BigIntegerField(blank=True, help_text='None: an answer to an address with no account (email-intake.md, no_account).', null=True),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['message_id'], name='notification_message_id'),
        ),
        migrations.AddField(
            model_name='inboundmessage',
            name='claim',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='inbound_messages', to='claims.claim'),
        ),
        migrations.AddField(
            model_name='inboundmessage',
            name='duplicate_of',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='claims.inboundmessage'),
        ),
        migrations.AddField(
            model_name='inboundmessage',
            name='incident',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='inbound_messages', to='claims.incident'),
        ),
        migrations.AddIndex(
            model_name='inboundmessage',
            index=models.Index(fields=['outcome', 'received_at'], name='inbound_outcome_received'),
        ),
        migrations.AddIndex(
            model_name='inboundmessage',
            index=models.Index(fields=['message_key'], name='inbound_message_key'),
        ),
        migrations.AddIndex(
            model_name='inboundmessage',
            index=models.Index(fields=['sha256'], name='inbound_sha256'),
        ),
        migrations.AddConstraint(
            model_name='inboundmessage',
            constraint=models.UniqueConstraint(fields=('place_key',), name='inbound_place_once'),
        ),
        migrations.AddConstraint(
            model_name='inboundmessage',
            constraint=models.UniqueConstraint(fields=('original_key',), name='inbound_one_original'),
        ),
        migrations.RunPython(database_guards, database_guards_removed),
        migrations.RunPython(roles, migrations.RunPython.noop),
    ]
