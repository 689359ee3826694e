"""Incidents and their items in the admin: the operations and review queue."""

from django.contrib import admin, messages
from django.utils.html import format_html

from . import selectors, services
from .models import (
    ApiClient,
    Claim,
    ClaimAttachment,
    ClaimItem,
    DetectionRun,
    Finding,
    Incident,
    Item,
    Notification,
)
from .roles import APPROVING_ROLES, Actor, Refused, roles_of


def progress_bar(run: DetectionRun | None) -> str:
    if run is None:
        return "no detection yet"
    return format_html(
        '<progress value="{}" max="{}" aria-label="detection progress"></progress> {} / {} users ({})',
        run.done_users, max(run.total_users, 1), run.done_users, run.total_users, run.status,
    )


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "window_start", "claims_close", "detection"]
    readonly_fields = ["detection", "settings_version"]
    actions = ["detect_all_users"]

    @admin.display(description="latest detection")
    def detection(self, incident):
        return progress_bar(selectors.detection_run_latest(incident=incident))

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        before = Incident.objects.get(pk=obj.pk).settings_dict()
        saved = services.incident_settings_save(incident=obj, before=before, changed_by=request.user.get_username())
        if saved.limits_proposed is not None:
            messages.warning(request, f"New approval limits proposed (change #{saved.limits_proposed.pk}): they apply "
                                      "once a second approver confirms them.")
        if saved.redetection is not None:
            messages.info(request, f"Settings changed ({', '.join(saved.changed)}): detection "
                                   f"#{saved.redetection.pk} started.")

    @admin.action(description="Detect for all users", permissions=["change"])
    def detect_all_users(self, request, queryset):
        for incident in queryset:
            run = services.detection_start(incident=incident, user_ids=None,
                                           requested_by=request.user.get_username(), reason="admin action")
            messages.info(request, f"Detection #{run.pk} of {incident.slug} started for {run.total_users} users.")


class DetectedAdmin(admin.ModelAdmin):
    """Rows the system writes (items, findings, runs, claims): staff act on them, never add or delete."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


@admin.register(Item)
class ItemAdmin(DetectedAdmin):
    list_display = ["user_id", "kind", "reference", "asset", "amount", "status", "approval", "usdc_value",
                    "flagged_at"]
    list_filter = ["incident", "status", "kind", "approval", FlaggedFilter, "asset"]
    search_fields = ["=user_id", "reference"]
    readonly_fields = [f.name for f in Item._meta.fields]
    show_full_result_count = False


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


class ClaimAttachmentInline(ReadOnlyInline):
    model = ClaimAttachment
    fields = ["original_name", "content_type", "size", "file", "note", "uploaded_at"]
    readonly_fields = fields


class ClaimItemInline(ReadOnlyInline):
    model = ClaimItem
    fields = ["item", "amount", "status"]
    readonly_fields = fields

    @admin.display(description="amount")
    def amount(self, link):
        return f"{link.item.amount} {link.item.asset}" if link.item.amount is not None else "needs review"

    @admin.display(description="item status")
    def status(self, link):
        return link.item.status


def outcomes_report(request, what: str, outcomes) -> None:
    """One message for what changed, one per reason for what did not: counts only real changes."""
    changed = [o for o in outcomes if o.changed]
    if changed:
        messages.success(request, f"{what}: {len(changed)} changed.")
    skipped: dict[str, list] = {}
    for outcome in outcomes:
        if not outcome.changed:
            skipped.setdefault(outcome.message, []).append(outcome.item_id)
    for why, ids in skipped.items():
        shown = ", ".join(str(i) for i in ids[:10] if i) + (" …" if len(ids) > 10 else "")
        messages.warning(request, f"{what}: {len(ids)} skipped ({why}){': items ' + shown if shown else ''}.")


def may_approve(request) -> bool:
    return bool(roles_of(request.user) & APPROVING_ROLES)


def _claim_action(label: str, service):
    @admin.action(description=label, permissions=["approve"])
    def action(modeladmin, request, queryset):
        actor = Actor.person(request.user)
        outcomes = []
        for claim_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                result = service(claim_id=claim_id, actor=actor)
            except Refused as exc:
                messages.error(request, f"Claim {claim_id}: {exc}")
                continue
            outcomes.extend(result if isinstance(result, list) else [result])
        outcomes_report(request, label, outcomes)

    action.__name__ = f"claims_{service.__name__}"
    return action


@admin.register(Claim)
class ClaimAdmin(DetectedAdmin):
    list_display = ["id", "incident", "user_id", "kind", "channel", "status", "created_at"]
    list_filter = ["incident", "status", "kind", "channel", "language"]
    search_fields = ["=user_id", "=trade_id", "=withdrawal_id", "order_id", "transaction_hash"]
    readonly_fields = [f.name for f in Claim._meta.fields]
    inlines = [ClaimItemInline, ClaimAttachmentInline]
    actions = [_claim_action("Take into review", services.claim_take_into_review),
               _claim_action("Approve the claims' items", services.claim_approve)]

    def has_approve_permission(self, request):
        return may_approve(request)


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Clients are created with `manage.py create_api_client` (it prints the token once); here
    staff can see them and revoke one by unticking is_active."""

    list_display = ["name", "scopes", "is_active", "created_at"]
    fields = ["name", "scopes", "is_active"]
    readonly_fields = ["name", "scopes"]

    def has_add_permission(self, request):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "to", "language", "status", "attempts", "sent_at"]
    list_filter = ["kind", "status", "language"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False
