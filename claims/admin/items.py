"""Incidents, their items (the approval queue), findings, detection runs and approval limits."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html

from .. import selectors, services
from ..explain import explain
from ..models import ApprovalLimitChange, AuditRecord, ClaimItem, DetectionRun, Finding, Incident, Item, ItemApproval
from ..money import amount_text
from ..roles import APPROVER, roles_of
from .actions import AmountForm, ReasonForm, RoleActions, actor_of, ask, each, outcomes_report
from .base import DetectedAdmin, ViewOnlyInline
from .history import AuditHistory
from .payouts import PayoutIncidentActions
from .queue import (
    AgeFilter,
    AmountFilter,
    ChannelFilter,
    CsvExport,
    FlaggedFilter,
    LanguageFilter,
    NeedsReviewFilter,
    QueueRows,
    QueueSearch,
    WaitingForMeFilter,
    age_text,
    amount_column,
    approvals_given,
    case_link,
    first_claim,
    item_search,
    plain,
)

SHOWN = {"amount": "amount_shown", "usdc_value": "usdc_shown", "flagged_amount": "flagged_amount_shown"}


def missing_approvals(item) -> int:
    """Approvals the current version still needs (`given` is annotated by the queue's query)."""
    if item.status != Item.Status.COMPUTED or item.approval == Item.Approval.POLICY:
        return 0
    return max(item.approvals_required - getattr(item, "given", 0), 0)


def progress_bar(run: DetectionRun | None) -> str:
    if run is None:
        return "no detection yet"
    return format_html(
        '<progress value="{}" max="{}" aria-label="detection progress"></progress> {} / {} users ({})',
        run.done_users,
        max(run.total_users, 1),
        run.done_users,
        run.total_users,
        run.status,
    )


class LimitChangeInline(ViewOnlyInline):
    model = ApprovalLimitChange
    fields = [
        "auto_approve_limit",
        "dual_approval_limit",
        "proposed_by",
        "proposed_at",
        "status",
        "decided_by",
        "decided_at",
    ]
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
            services.audit_record(
                actor=request.user.get_username(),
                object_type="incident",
                object_id=obj.pk,
                action="created",
                after=obj.settings_dict(),
                reason="created in the admin",
            )
            return
        before = Incident.objects.get(pk=obj.pk).settings_dict()
        saved = services.incident_settings_save(incident=obj, before=before, changed_by=request.user.get_username())
        if saved.limits_proposed is not None:
            messages.warning(
                request,
                f"New approval limits proposed (change #{saved.limits_proposed.pk}): they apply "
                "once a second approver confirms them under Approval limit changes.",
            )
        if saved.redetection is not None:
            messages.info(
                request, f"Settings changed ({', '.join(saved.changed)}): detection #{saved.redetection.pk} started."
            )

    @admin.action(description="Detect for all users", permissions=["change"])
    def detect_all_users(self, request, queryset):
        for incident in queryset:
            run = services.detection_start(
                incident=incident, user_ids=None, requested_by=request.user.get_username(), reason="admin action"
            )
            messages.info(request, f"Detection #{run.pk} of {incident.slug} started for {run.total_users} users.")


@admin.register(ApprovalLimitChange)
class ApprovalLimitChangeAdmin(DetectedAdmin):
    list_display = [
        "incident",
        "auto_approve_limit",
        "dual_approval_limit",
        "proposed_by",
        "proposed_at",
        "status",
        "decided_by",
    ]
    list_filter = ["status", "incident"]
    readonly_fields = [f.name for f in ApprovalLimitChange._meta.fields]
    actions = ["confirm"]

    def has_confirm_permission(self, request):
        return APPROVER in roles_of(request.user)

    @admin.action(description="Confirm these limits (a second approver)", permissions=["confirm"])
    def confirm(self, request, queryset):
        each(
            request,
            "Confirm limits",
            queryset.values_list("id", flat=True),
            lambda change_id: services.incident_limits_confirm(change_id=change_id, actor=actor_of(request)),
        )


class ApprovalInline(ViewOnlyInline):
    model = ItemApproval
    fields = ["version", "slot", "approver_name", "is_approver_role", "at"]
    readonly_fields = fields


@admin.register(Item)
class ItemAdmin(QueueSearch, CsvExport, QueueRows, DetectedAdmin):
    audit_object_type = "item"
    list_display = ["id", "account", "event", "found", "claimed", "usdc", "status_shown", "age", "assignee"]
    list_filter = [
        "incident",
        "kind",
        "status",
        "approval",
        NeedsReviewFilter,
        FlaggedFilter,
        WaitingForMeFilter,
        ChannelFilter,
        LanguageFilter,
        AgeFilter,
        AmountFilter,
    ]
    queue_search = staticmethod(item_search)
    list_per_page = 50
    readonly_fields = ["case", "explanation", *[SHOWN.get(f.name, f.name) for f in Item._meta.fields]]
    amount_shown = amount_column("amount", "asset", "amount")
    usdc_shown = amount_column("usdc_value", "", "USDC value")
    flagged_amount_shown = amount_column("flagged_amount", "asset", "flagged amount")
    inlines = [ApprovalInline]
    show_full_result_count = False
    change_list_template = "admin/claims/queue_change_list.html"
    actions = ["approve", "reject", "send_back", "accept_recomputation", "set_amount", "assign_to_me"]
    csv_columns = [
        ("id", lambda i, d: i.id),
        ("incident", lambda i, d: i.incident.slug),
        ("userId", lambda i, d: i.user_id),
        ("kind", lambda i, d: i.kind),
        ("reference", lambda i, d: i.reference),
        ("asset", lambda i, d: i.asset),
        ("amount", lambda i, d: plain(i.amount, d.get(i.asset))),
        ("claimed", lambda i, d: plain(i.claimed_amount, d.get(i.claimed_asset))),
        ("claimedAsset", lambda i, d: i.claimed_asset or ""),
        ("usdcValue", lambda i, d: plain(i.usdc_value, 2)),
        ("status", lambda i, d: i.status),
        ("tier", lambda i, d: i.approval),
        ("version", lambda i, d: i.version),
        ("approvalsMissing", lambda i, d: missing_approvals(i)),
        ("flagged", lambda i, d: "yes" if i.flagged_at else ""),
        ("createdAt", lambda i, d: i.created_at.isoformat()),
        ("assignee", lambda i, d: i.assignee or ""),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("incident")
            .annotate(
                given=approvals_given(),
                claimed_amount=first_claim("claimed_amount"),
                claimed_asset=first_claim("claimed_asset"),
                assignee=first_claim("assigned_to__username"),
            )
        )

    @admin.display(description="account", ordering="user_id")
    def account(self, item):
        return case_link(item.incident_id, item.user_id)

    @admin.display(description="kind · reference", ordering="kind")
    def event(self, item):
        return format_html(
            '{}<br><span class="cd-muted" title="{}">{}</span>',
            item.kind.replace("_", " "),
            item.reference,
            item.reference,
        )

    @admin.display(description="found", ordering="amount")
    def found(self, item):
        if item.amount is None:
            return format_html('<span class="cd-muted">— {}</span>', item.asset)
        return f"{amount_text(item.amount, item.decimals.get(item.asset))} {item.asset}"

    @admin.display(description="claimed")
    def claimed(self, item):
        if item.claimed_amount is None:
            return "–"
        text = f"{amount_text(item.claimed_amount, item.decimals.get(item.claimed_asset))} {item.claimed_asset}"
        differs = item.claimed_asset == item.asset and item.amount is not None and item.claimed_amount != item.amount
        return (
            format_html('<span class="cd-diff" title="differs from what was found">{}</span>', text)
            if differs
            else text
        )

    @admin.display(description="USDC", ordering="usdc_value")
    def usdc(self, item):
        return "?" if item.usdc_value is None else amount_text(item.usdc_value, 2)

    @admin.display(description="status · tier", ordering="status")
    def status_shown(self, item):
        tone = {"approved": "ok", "paid": "ok", "rejected": "bad", "needs_review": "warn"}.get(item.status, "info")
        flagged = format_html(' <span class="cd-badge warn">flagged</span>') if item.flagged_at else ""
        missing = missing_approvals(item)
        tier = {"policy": "policy", "one": "one approval", "two": "two approvals"}[item.approval]
        return format_html(
            '<span class="cd-badge {}">{}</span>{}<br><span class="cd-muted">{}</span>{}',
            tone,
            item.status.replace("_", " "),
            flagged,
            tier,
            format_html(" · <strong>{} missing</strong>", missing) if missing else "",
        )

    @admin.display(description="age", ordering="created_at")
    def age(self, item):
        return age_text(item.created_at, item.now)

    @admin.display(description="assignee")
    def assignee(self, item):
        return item.assignee or "–"

    @admin.display(description="case")
    def case(self, item):
        return case_link(item.incident_id, item.user_id, f"Open the case of {item.user_id}")

    @admin.display(description="in plain words")
    def explanation(self, item):
        return explain(
            kind=item.kind, inputs=item.inputs, amount=item.amount, asset=item.asset, review_reason=item.review_reason
        )

    @admin.action(description="Assign their claims to me", permissions=["approve"])
    def assign_to_me(self, request, queryset):
        claim_ids = ClaimItem.objects.filter(item__in=queryset).values_list("claim_id", flat=True).distinct()
        outcomes_report(
            request,
            "Assign",
            services.claims_assign(claim_ids=list(claim_ids), actor=actor_of(request), to=request.user),
        )

    def audit_records(self, item):
        """The item's records and those of the approvals given to it."""
        return AuditRecord.objects.filter(
            Q(object_type="item", object_id=item.pk) | Q(object_type="approval", after__item=item.pk)
        )

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
        outcomes_report(
            request,
            "Reject",
            services.items_reject(item_ids=ids, actor=actor_of(request), reason=form.cleaned_data["reason"]),
        )
        return None

    @admin.action(description="Send back to undecided (reopen)…", permissions=["approve"])
    def send_back(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=ReasonForm, title="Send items back", action="send_back")
        if form is None:
            return page
        each(
            request,
            "Send back",
            queryset.values_list("id", flat=True),
            lambda item_id: services.item_send_back(
                item_id=item_id, actor=actor_of(request), reason=form.cleaned_data["reason"]
            ),
        )
        return None

    @admin.action(description="Accept detection's recomputation…", permissions=["approve"])
    def accept_recomputation(self, request, queryset):
        form, page = ask(
            self,
            request,
            queryset,
            form_class=ReasonForm,
            title="Accept the recomputation",
            action="accept_recomputation",
        )
        if form is None:
            return page
        each(
            request,
            "Accept recomputation",
            queryset.values_list("id", flat=True),
            lambda item_id: services.item_recomputation_accept(
                item_id=item_id, actor=actor_of(request), reason=form.cleaned_data["reason"]
            ),
        )
        return None

    @admin.action(description="Set the amount by hand…", permissions=["approve"])
    def set_amount(self, request, queryset):
        form, page = ask(
            self, request, queryset, form_class=AmountForm, title="Set the amount", action="set_amount", single=True
        )
        if form is None:
            return page
        each(
            request,
            "Set amount",
            queryset.values_list("id", flat=True),
            lambda item_id: services.item_amount_set(
                item_id=item_id,
                actor=actor_of(request),
                amount=form.cleaned_data["amount"].strip(),
                reason=form.cleaned_data["reason"],
            ),
        )
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
