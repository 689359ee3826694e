"""Claims (the review queue), their e-mail, and the API's clients."""

from django.contrib import admin

from .. import services
from ..models import ApiClient, Claim, ClaimAttachment, ClaimItem, Notification
from ..roles import Refused
from ..services import Outcome
from .actions import AssetAmountForm, ReasonForm, actor_of, ask, each, outcomes_report
from .base import DetectedAdmin, ReadOnlyInline


class ClaimAttachmentInline(ReadOnlyInline):
    model = ClaimAttachment
    fields = ["original_name", "content_type", "size", "file", "note", "uploaded_at"]
    readonly_fields = fields


class ClaimItemInline(ReadOnlyInline):
    model = ClaimItem
    fields = ["item", "amount", "status"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item")  # one query, however many items

    @admin.display(description="amount")
    def amount(self, link):
        return f"{link.item.amount.normalize():f} {link.item.asset}" if link.item.amount is not None else (
            "needs review")

    @admin.display(description="item status")
    def status(self, link):
        return link.item.get_status_display()


@admin.register(Claim)
class ClaimAdmin(DetectedAdmin):
    audit_object_type = "claim"
    list_display = ["id", "incident", "user_id", "kind", "channel", "status", "created_at"]
    list_filter = ["incident", "status", "kind", "channel", "language"]
    list_select_related = ["incident"]
    search_fields = ["=user_id", "=trade_id", "=withdrawal_id", "order_id", "transaction_hash"]
    readonly_fields = [f.name for f in Claim._meta.fields]
    inlines = [ClaimItemInline, ClaimAttachmentInline]
    actions = ["take_into_review", "approve", "reject", "set_amount"]

    @admin.action(description="Take into review", permissions=["approve"])
    def take_into_review(self, request, queryset):
        each(request, "Take into review", queryset.values_list("id", flat=True),
             lambda claim_id: _changed(services.claim_take_into_review(claim_id=claim_id, actor=actor_of(request))))

    @admin.action(description="Approve the claims' items", permissions=["approve"])
    def approve(self, request, queryset):
        outcomes = []
        for claim_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                outcomes += services.claim_approve(claim_id=claim_id, actor=actor_of(request))
            except Refused as exc:
                outcomes.append(Outcome(claim_id, False, str(exc)))
        outcomes_report(request, "Approve", outcomes)

    @admin.action(description="Reject…", permissions=["approve"])
    def reject(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=ReasonForm, title="Reject claims", action="reject")
        if form is None:
            return page
        outcomes = []
        for claim_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                outcomes += services.claim_reject(claim_id=claim_id, actor=actor_of(request),
                                                  reason=form.cleaned_data["reason"])
            except Refused as exc:
                outcomes.append(Outcome(claim_id, False, str(exc)))
        outcomes_report(request, "Reject", outcomes)
        return None

    @admin.action(description="Set an amount owed (kind other)…", permissions=["approve"])
    def set_amount(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=AssetAmountForm, title="Set an amount owed",
                         action="set_amount", single=True)
        if form is None:
            return page
        values = form.cleaned_data
        each(request, "Set an amount", queryset.values_list("id", flat=True),
             lambda claim_id: services.item_for_claim_create(claim_id=claim_id, actor=actor_of(request),
                                                             asset=values["asset"].upper(), amount=values["amount"],
                                                             reason=values["reason"]))
        return None


def _changed(outcome):
    """A service outcome that changed nothing counts as a refusal here."""
    if not outcome.changed:
        raise Refused(outcome.message, rule="nothing to do")
    return outcome


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Clients are created with `manage.py create_api_client` (it prints the token once); here
    staff can see them and revoke one by unticking is_active."""

    list_display = ["name", "scopes", "user", "is_active", "created_at"]
    fields = ["name", "scopes", "user", "is_active"]
    readonly_fields = ["name", "scopes", "user"]

    def has_add_permission(self, request):
        return False


@admin.register(Notification)
class NotificationAdmin(DetectedAdmin):
    list_display = ["key", "kind", "to", "language", "status", "attempts", "sent_at"]
    list_filter = ["kind", "status", "language"]
    readonly_fields = [f.name for f in Notification._meta.fields]
