"""The item events, claim transitions and settings changes of earlier releases become records of
the one audit trail, in the order they happened."""

from django.db import migrations


def _amounts(old, new):
    before = None if old is None else {"amount": f"{old:f}"}
    after = None if new is None else {"amount": f"{new:f}"}
    return before, after


def _claim_action(from_status, to_status):
    if not from_status:
        return "filed"
    return "status" if from_status != to_status else "noted"


def forwards(apps, schema_editor):
    AuditRecord = apps.get_model("claims", "AuditRecord")
    records = []
    for event in apps.get_model("claims", "ItemEvent").objects.order_by("at", "id"):
        before, after = _amounts(event.old_amount, event.new_amount)
        records.append(AuditRecord(at=event.at, actor=event.actor, object_type="item", object_id=event.item_id,
                                   action=event.action, before=before, after=after, reason=event.note))
    for t in apps.get_model("claims", "ClaimTransition").objects.order_by("at", "id"):
        records.append(AuditRecord(at=t.at, actor=t.actor, object_type="claim", object_id=t.claim_id,
                                   action=_claim_action(t.from_status, t.to_status),
                                   before={"status": t.from_status} if t.from_status else None,
                                   after={"status": t.to_status}, reason=t.reason))
    for change in apps.get_model("claims", "IncidentSettingsChange").objects.order_by("changed_at", "id"):
        reason = f"detection #{change.redetection_id} started" if change.redetection_id else ""
        records.append(AuditRecord(at=change.changed_at, actor=change.changed_by, object_type="incident",
                                   object_id=change.incident_id, action="settings_changed", before=change.before,
                                   after=change.after, reason=reason))
    records.sort(key=lambda record: record.at)
    AuditRecord.objects.bulk_create(records, batch_size=5000)


class Migration(migrations.Migration):
    dependencies = [("claims", "0003_approvals_payouts_audit")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
