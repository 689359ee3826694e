"""Claims (the review queue), their e-mail, and the API's clients."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from .. import services
from ..models import ApiClient, Claim, ClaimAttachment, ClaimItem, Notification
from ..roles import Refused
from ..services import Outcome
from .actions import AssetAmountForm, ReasonForm, actor_of, ask, each, outcomes_report
from .base import DetectedAdmin, ReadOnlyInline


class ClaimAttachmentInline(ReadOnlyInline):
    model = ClaimAttachment
    fields = ["open", "content_type", "size", "note", "uploaded_at"]
    readonly_fields = fields

    @admin.display(description="file")
    def open(self, attachment):
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>',
                           reverse("admin:claims_claim_attachment", args=[attachment.pk]), attachment.original_name)


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

    def get_urls(self):
        return [path("attachment/<int:attachment_id>/", self.admin_site.admin_view(self.attachment),
                     name="claims_claim_attachment"), *super().get_urls()]

    def attachment(self, request, attachment_id: int):
        """A claimant's file, for staff only: never rendered as a page of this site (a download,
        images inline), with no sniffing of another type and a sandbox if a browser renders it."""
        found = get_object_or_404(ClaimAttachment.objects.select_related("claim"), pk=attachment_id)
        if not self.has_view_permission(request, found.claim):
            raise PermissionDenied
        response = FileResponse(found.file.open("rb"), content_type=found.content_type,
                                as_attachment=not found.content_type.startswith("image/"),
                                filename=header_safe_name(found.original_name))
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, no-store"
        return response

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


def header_safe_name(name: str) -> str:
    """A file name fit for Content-Disposition: no line breaks or control characters."""
    return "".join(c for c in name if c.isprintable()) or "attachment"


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
