"""An object's History page in the admin shows its records in the audit trail (audit.md, "What
staff see"): newest first, before and after side by side."""

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse

from ..models import AuditRecord


class AuditHistory:
    """ModelAdmin mixin. `audit_object_type` names the object in the trail."""

    audit_object_type = ""

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"no {self.model._meta.verbose_name} {object_id}")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        records = self.audit_records(obj).order_by("-id")
        return TemplateResponse(
            request,
            "admin/claims/audit_history.html",
            {
                **self.admin_site.each_context(request),
                "title": f"History of {obj}",
                "object": obj,
                "records": [(r, _side_by_side(r.before, r.after)) for r in records],
                "opts": self.model._meta,
                **(extra_context or {}),
            },
        )

    def audit_records(self, obj):
        return AuditRecord.objects.filter(object_type=self.audit_object_type, object_id=obj.pk)


def _side_by_side(before, after) -> list[tuple[str, object, object]]:
    """(field, before, after) for every field either side names."""
    before, after = before or {}, after or {}
    return [(key, before.get(key, ""), after.get(key, "")) for key in sorted({*before, *after})]
