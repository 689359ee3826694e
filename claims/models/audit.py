"""The audit trail (audit.md): one append-only log of every state change, chained by a sealer.

Records are written freely by the services; the sealer links them afterwards (AuditHash, one
row per record, and AuditSeal), so no writer waits on the chain. Nothing updates or deletes a
record or a hash: the querysets and save() refuse, and on PostgreSQL a trigger does too.
"""

from django.db import models
from django.utils import timezone

from exchange.models import AppendOnly, AppendOnlyError

__all__ = ["AppendOnlyError", "AuditHash", "AuditRecord", "AuditSeal"]

TRAIL = "the audit trail"


class AuditRecord(AppendOnly):
    """One state change: who (`policy`, `detection`, `matching`, `claimant 100056`, a staff
    username, `command-line alice`), when, of what, the values before and after, and why."""

    append_only_what = TRAIL

    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=150)
    object_type = models.CharField(max_length=32)
    object_id = models.BigIntegerField()
    action = models.CharField(max_length=32)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id", "id"], name="audit_object")]

    def __str__(self):
        return f"record {self.pk}: {self.actor} {self.action} {self.object_type} {self.object_id}"

    # A claim's records all name its status before and after: read as its transitions.
    @property
    def from_status(self) -> str:
        return (self.before or {}).get("status", "")

    @property
    def to_status(self) -> str:
        return (self.after or {}).get("status", self.from_status)


class AuditHash(AppendOnly):
    """A record's place in the chain and its hash, written by the sealer. Keyed by the record's id
    without a foreign key: a record removed behind the database's back leaves its hash behind."""

    append_only_what = TRAIL

    record_id = models.BigIntegerField(primary_key=True)
    position = models.BigIntegerField(unique=True, help_text="1 for the first record sealed, then one more each.")
    hash = models.CharField(max_length=64)


class AuditSeal(AppendOnly):
    """One run of the sealer: the records it chained and the last one's hash."""

    append_only_what = TRAIL

    sealed_at = models.DateTimeField(default=timezone.now)
    first_record_id = models.BigIntegerField()
    last_record_id = models.BigIntegerField()
    last_hash = models.CharField(max_length=64)
    records = models.PositiveIntegerField()
    total_records = models.PositiveBigIntegerField(help_text="Records chained by this seal and every one before.")

    class Meta:
        ordering = ["id"]
