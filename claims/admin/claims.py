"""Claims (the review queue), their e-mail, and the API's clients."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from exchange import selectors as ledger

from .. import services
from ..models import ApiClient, Claim, ClaimAttachment, ClaimItem, Item, Notification
from ..money import amount_text
from ..roles import Refused
from ..services import Outcome
from .actions import AssetAmountForm, ReasonForm, actor_of, ask, each, outcomes_report
from .base import DetectedAdmin, ViewOnlyInline
from .case import case_view
from .queue import (
    AgeFilter,
    ClaimAmountFilter,
    ClaimFlaggedFilter,
    ClaimNeedsReviewFilter,
    ClaimWaitingForMeFilter,
    CsvExport,
    QueueRows,
    QueueSearch,
    age_text,
    amount_column,
    case_link,
    claim_search,
    plain,
)


def found_totals(claim) -> list[tuple[str, object]]:
    """What was found for a claim, per asset: its items' amounts, rejected ones left out."""
    totals: dict[str, object] = {}
    for item in claim.items.all():
        if item.amount is not None and item.status != Item.Status.REJECTED:
            totals[item.asset] = totals.get(item.asset, 0) + item.amount
    return sorted(totals.items())


class ClaimAttachmentInline(ViewOnlyInline):
    model = ClaimAttachment
    fields = ["open", "content_type", "size", "note", "uploaded_at"]
    readonly_fields = fields

    @admin.display(description="file")
    def open(self, attachment):
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>',
            reverse("admin:claims_claim_attachment", args=[attachment.pk]),
            attachment.original_name,
        )


class ClaimItemInline(ViewOnlyInline):
    model = ClaimItem
    fields = ["item", "amount", "status"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item")  # one query, however many items

    @cached_property
    def decimals(self) -> dict[str, int]:
        return ledger.asset_decimals()  # an inline is made anew for each request

    @admin.display(description="amount")
    def amount(self, link):
        return (
            f"{amount_text(link.item.amount, self.decimals.get(link.item.asset))} {link.item.asset}"
            if (link.item.amount is not None)
            else "needs review"
        )

    @admin.display(description="item status")
    def status(self, link):
        return link.item.get_status_display()


@admin.register(Claim)
class ClaimAdmin(QueueSearch, CsvExport, QueueRows, DetectedAdmin):
    audit_object_type = "claim"
    list_display = ["number", "account", "kind_shown", "channel", "claimed", "found", "status_shown", "age", "assignee"]
    list_filter = [
        "incident",
        "kind",
        "status",
        "channel",
        "language",
        ClaimNeedsReviewFilter,
        ClaimFlaggedFilter,
        ClaimWaitingForMeFilter,
        AgeFilter,
        ClaimAmountFilter,
    ]
    list_select_related = ["incident", "assigned_to"]
    queue_search = staticmethod(claim_search)
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = [
        "case",
        *[f.name if f.name != "claimed_amount" else "claimed_amount_shown" for f in Claim._meta.fields],
    ]
    claimed_amount_shown = amount_column("claimed_amount", "claimed_asset", "claimed amount")
    inlines = [ClaimItemInline, ClaimAttachmentInline]
    change_list_template = "admin/claims/queue_change_list.html"
    actions = ["take_into_review", "approve", "reject", "set_amount", "assign_to_me"]
    csv_columns = [
        ("number", lambda c, d: c.number),
        ("incident", lambda c, d: c.incident.slug),
        ("userId", lambda c, d: c.user_id),
        ("kind", lambda c, d: c.kind),
        ("channel", lambda c, d: c.channel),
        ("language", lambda c, d: c.language),
        ("claimed", lambda c, d: plain(c.claimed_amount, d.get(c.claimed_asset))),
        ("claimedAsset", lambda c, d: c.claimed_asset),
        ("found", lambda c, d: " ".join(f"{plain(t, d.get(a))} {a}" for a, t in found_totals(c))),
        ("status", lambda c, d: c.status),
        ("createdAt", lambda c, d: c.created_at.isoformat()),
        ("assignee", lambda c, d: c.assigned_to.username if c.assigned_to else ""),
    ]

    def get_queryset(self, request):
        items = Item.objects.only("id", "asset", "amount", "status").order_by()
        return super().get_queryset(request).prefetch_related(Prefetch("items", queryset=items))

    def get_urls(self):
        return [
            path(
                "attachment/<int:attachment_id>/",
                self.admin_site.admin_view(self.attachment),
                name="claims_claim_attachment",
            ),
            path(
                "case/<int:incident_id>/<int:user_id>/", self.admin_site.admin_view(self.case_view), name="claims_case"
            ),
            *super().get_urls(),
        ]

    def case_view(self, request, incident_id: int, user_id: int):
        return case_view(self, request, incident_id, user_id)

    @admin.display(description="claim", ordering="id")
    def number(self, claim):
        return claim.number

    @admin.display(description="account", ordering="user_id")
    def account(self, claim):
        return case_link(claim.incident_id, claim.user_id)

    @admin.display(description="kind", ordering="kind")
    def kind_shown(self, claim):
        return claim.kind.replace("_", " ")

    @admin.display(description="claimed", ordering="claimed_amount")
    def claimed(self, claim):
        if claim.claimed_amount is None:
            return "–"
        return f"{amount_text(claim.claimed_amount, claim.decimals.get(claim.claimed_asset))} {claim.claimed_asset}"

    @admin.display(description="found")
    def found(self, claim):
        totals = found_totals(claim)
        if not totals:
            return "–"
        text = ", ".join(f"{amount_text(total, claim.decimals.get(asset))} {asset}" for asset, total in totals)
        differs = claim.claimed_amount is not None and dict(totals).get(claim.claimed_asset) != claim.claimed_amount
        return (
            format_html('<span class="cd-diff" title="differs from what was claimed">{}</span>', text)
            if (differs)
            else text
        )

    @admin.display(description="status", ordering="status")
    def status_shown(self, claim):
        tone = {"approved": "ok", "paid": "ok", "rejected": "bad", "unmatched": "warn", "in_review": "warn"}.get(
            claim.status, "info"
        )
        return format_html('<span class="cd-badge {}">{}</span>', tone, claim.status.replace("_", " "))

    @admin.display(description="age", ordering="created_at")
    def age(self, claim):
        return age_text(claim.created_at, claim.now)

    @admin.display(description="assignee", ordering="assigned_to__username")
    def assignee(self, claim):
        return claim.assigned_to.username if claim.assigned_to else "–"

    @admin.display(description="case")
    def case(self, claim):
        return case_link(claim.incident_id, claim.user_id, f"Open the case of {claim.user_id}")

    @admin.action(description="Assign to me", permissions=["approve"])
    def assign_to_me(self, request, queryset):
        outcomes_report(
            request,
            "Assign",
            services.claims_assign(
                claim_ids=list(queryset.values_list("id", flat=True)), actor=actor_of(request), to=request.user
            ),
        )

    def attachment(self, request, attachment_id: int):
        """A claimant's file, for staff only: never rendered as a page of this site (a download,
        images inline), with no sniffing of another type and a sandbox if a browser renders it."""
        found = get_object_or_404(ClaimAttachment.objects.select_related("claim"), pk=attachment_id)
        if not self.has_view_permission(request, found.claim):
            raise PermissionDenied
        response = FileResponse(
            found.file.open("rb"),
            content_type=found.content_type,
            as_attachment=not found.content_type.startswith("image/"),
            filename=header_safe_name(found.original_name),
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, no-store"
        return response

    @admin.action(description="Take into review", permissions=["approve"])
    def take_into_review(self, request, queryset):
        each(
            request,
            "Take into review",
            queryset.values_list("id", flat=True),
            lambda claim_id: _changed(services.claim_take_into_review(claim_id=claim_id, actor=actor_of(request))),
        )

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
                outcomes += services.claim_reject(
                    claim_id=claim_id, actor=actor_of(request), reason=form.cleaned_data["reason"]
                )
            except Refused as exc:
                outcomes.append(Outcome(claim_id, False, str(exc)))
        outcomes_report(request, "Reject", outcomes)
        return None

    @admin.action(description="Set an amount owed (kind other)…", permissions=["approve"])
    def set_amount(self, request, queryset):
        form, page = ask(
            self,
            request,
            queryset,
            form_class=AssetAmountForm,
            title="Set an amount owed",
            action="set_amount",
            single=True,
        )
        if form is None:
            return page
        values = form.cleaned_data
        each(
            request,
            "Set an amount",
            queryset.values_list("id", flat=True),
            lambda claim_id: services.item_for_claim_create(
                claim_id=claim_id,
                actor=actor_of(request),
                asset=values["asset"].upper(),
                amount=values["amount"],
                reason=values["reason"],
            ),
        )
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
