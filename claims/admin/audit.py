"""The audit trail, read-only: every record, with its seal status."""

from django.contrib import admin

from ..models import AuditRecord, AuditSeal
from .base import DetectedAdmin


@admin.register(AuditRecord)
class AuditRecordAdmin(DetectedAdmin):
    list_display = ["id", "at", "actor", "object_type", "object_id", "action", "reason"]
    list_filter = ["object_type", "action"]
    search_fields = ["=object_id", "actor"]
    readonly_fields = [f.name for f in AuditRecord._meta.fields]
    show_full_result_count = False


@admin.register(AuditSeal)
class AuditSealAdmin(DetectedAdmin):
    list_display = ["id", "sealed_at", "first_record_id", "last_record_id", "records", "total_records", "last_hash"]
    readonly_fields = [f.name for f in AuditSeal._meta.fields]
