"""Incidents, their items (the approval queue), findings, detection runs and approval limits."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html

from .. import selectors, services
from ..models import ApprovalLimitChange, AuditRecord, DetectionRun, Finding, Incident, Item, ItemApproval
from ..roles import APPROVER, roles_of
from .actions import AmountForm, ReasonForm, RoleActions, actor_of, ask, each, outcomes_report
from .base import DetectedAdmin, ReadOnlyInline
from .history import AuditHistory
from .payouts import PayoutIncidentActions


def progress_bar(run: DetectionRun | None) -> str:
    if run is None:
        return "no detection yet"
    return format_html(
        '<progress value="{}" max="{}" aria-label="detection progress"></progress> {} / {} users ({})',
        run.done_users, max(run.total_users, 1), run.done_users, run.total_users, run.status,
    )


class LimitChangeInline(ReadOnlyInline):
    model = ApprovalLimitChange
    fields = ["auto_approve_limit", "dual_approval_limit", "proposed_by", "proposed_at", "status", "decided_by",
              "decided_at"]
    readonly_fields = fields


@admin.register(Incident)
class IncidentAdmin(PayoutIncidentActions, RoleActions, AuditHistory, admin.ModelAdmin):
    audit_object_type = "incident"
    list_display = ["slug", "title", "window_start", "claims_close", "detection"]
    readonly_fields = ["detection", "settings_version"]
    inlines = [LimitChangeInline]
    actions = ["detect_all_users", "payout_batch", "reconcile"]

    @admin.display(description="latest detection")
    def detection(self, incident):
        return progress_bar(selectors.detection_run_latest(incident=incident))

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            services.audit_record(actor=request.user.get_username(), object_type="incident", object_id=obj.pk,
                                  action="created", after=obj.settings_dict(), reason="created in the admin")
            return
        before = Incident.objects.get(pk=obj.pk).settings_dict()
        saved = services.incident_settings_save(incident=obj, before=before, changed_by=request.user.get_username())
        if saved.limits_proposed is not None:
            messages.warning(request, f"New approval limits proposed (change #{saved.limits_proposed.pk}): they apply "
                                      "once a second approver confirms them under Approval limit changes.")
        if saved.redetection is not None:
            messages.info(request, f"Settings changed ({', '.join(saved.changed)}): detection "
                                   f"#{saved.redetection.pk} started.")

    @admin.action(description="Detect for all users", permissions=["change"])
    def detect_all_users(self, request, queryset):
        for incident in queryset:
            run = services.detection_start(incident=incident, user_ids=None,
                                           requested_by=request.user.get_username(), reason="admin action")
            messages.info(request, f"Detection #{run.pk} of {incident.slug} started for {run.total_users} users.")


@admin.register(ApprovalLimitChange)
class ApprovalLimitChangeAdmin(DetectedAdmin):
    list_display = ["incident", "auto_approve_limit", "dual_approval_limit", "proposed_by", "proposed_at", "status",
                    "decided_by"]
    list_filter = ["status", "incident"]
    readonly_fields = [f.name for f in ApprovalLimitChange._meta.fields]
    actions = ["confirm"]

    def has_confirm_permission(self, request):
        return APPROVER in roles_of(request.user)

    @admin.action(description="Confirm these limits (a second approver)", permissions=["confirm"])
    def confirm(self, request, queryset):
        each(request, "Confirm limits", queryset.values_list("id", flat=True),
             lambda change_id: services.incident_limits_confirm(change_id=change_id, actor=actor_of(request)))


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged for staff"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "flagged"), ("no", "not flagged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(flagged_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(flagged_at__isnull=True)
        return queryset


class ApprovalInline(ReadOnlyInline):
    model = ItemApproval
    fields = ["version", "slot", "approver_name", "is_approver_role", "at"]
    readonly_fields = fields


@admin.register(Item)
class ItemAdmin(DetectedAdmin):
    audit_object_type = "item"
    list_display = ["id", "user_id", "kind", "reference", "asset", "amount", "status", "approval", "version",
                    "usdc_value", "flagged_at"]
    list_filter = ["incident", "status", "kind", "approval", FlaggedFilter, "asset"]
    search_fields = ["=user_id", "reference"]
    readonly_fields = [f.name for f in Item._meta.fields]
    inlines = [ApprovalInline]
    show_full_result_count = False
    actions = ["approve", "reject", "send_back", "accept_recomputation", "set_amount"]

    def audit_records(self, item):
        """The item's records and those of the approvals given to it."""
        return AuditRecord.objects.filter(Q(object_type="item", object_id=item.pk)
                                          | Q(object_type="approval", after__item=item.pk))

    @admin.action(description="Approve (the current version)", permissions=["approve"])
    def approve(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        outcomes_report(request, "Approve", services.items_approve(item_ids=ids, actor=actor_of(request)))

    @admin.action(description="Reject…", permissions=["approve"])
    def reject(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=ReasonForm, title="Reject items", action="reject")
        if form is None:
            return page
        ids = list(queryset.values_list("id", flat=True))
        outcomes_report(request, "Reject", services.items_reject(item_ids=ids, actor=actor_of(request),
                                                                 reason=form.cleaned_data["reason"]))
        return None

    @admin.action(description="Send back to undecided (reopen)…", permissions=["approve"])
    def send_back(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=ReasonForm, title="Send items back", action="send_back")
        if form is None:
            return page
        each(request, "Send back", queryset.values_list("id", flat=True), lambda item_id: services.item_send_back(
            item_id=item_id, actor=actor_of(request), reason=form.cleaned_data["reason"]))
        return None

    @admin.action(description="Accept detection's recomputation…", permissions=["approve"])
    def accept_recomputation(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=ReasonForm, title="Accept the recomputation",
                         action="accept_recomputation")
        if form is None:
            return page
        each(request, "Accept recomputation", queryset.values_list("id", flat=True),
             lambda item_id: services.item_recomputation_accept(item_id=item_id, actor=actor_of(request),
                                                                reason=form.cleaned_data["reason"]))
        return None

    @admin.action(description="Set the amount by hand…", permissions=["approve"])
    def set_amount(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=AmountForm, title="Set the amount", action="set_amount",
                         single=True)
        if form is None:
            return page
        each(request, "Set amount", queryset.values_list("id", flat=True), lambda item_id: services.item_amount_set(
            item_id=item_id, actor=actor_of(request), amount=form.cleaned_data["amount"].strip(),
            reason=form.cleaned_data["reason"]))
        return None


@admin.register(Finding)
class FindingAdmin(DetectedAdmin):
    list_display = ["user_id", "kind", "reference", "asset", "quantity", "description"]
    list_filter = ["incident", "kind"]
    search_fields = ["=user_id"]
    readonly_fields = [f.name for f in Finding._meta.fields]


@admin.register(DetectionRun)
class DetectionRunAdmin(DetectedAdmin):
    list_display = ["id", "incident", "started_at", "finished_at", "progress", "requested_by", "reason"]
    list_filter = ["incident", "status"]
    readonly_fields = [f.name for f in DetectionRun._meta.fields] + ["progress"]

    @admin.display(description="progress")
    def progress(self, run):
        return progress_bar(run)
