"""Payouts for finance: batches (with their treasury files), lines (release), treasury's
confirmation files, and the reconciliation report. Every operation goes through the payout
services, which check the person's role (finance) and record what changed."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .. import services
from ..models import Incident, PayoutBatch, PayoutConfirmation, PayoutLine, PayoutLineItem
from ..roles import Refused
from .actions import ReasonForm, actor_of, ask, each, may_pay
from .base import DetectedAdmin, ViewOnlyInline
from .queue import QueueRows, amount_column


class LineInline(ViewOnlyInline):
    model = PayoutLine
    fields = ["key", "user_id", "asset", "amount", "status", "transaction_id", "confirmed_at"]
    readonly_fields = fields
    show_change_link = True


@admin.register(PayoutBatch)
class PayoutBatchAdmin(DetectedAdmin):
    audit_object_type = "payout_batch"
    list_display = ["__str__", "asset", "created_by", "created_at", "files"]
    list_filter = ["incident"]
    list_select_related = ["incident"]
    readonly_fields = [f.name for f in PayoutBatch._meta.fields] + ["files"]
    inlines = [LineInline]

    def get_urls(self):
        return [
            path(
                "<int:batch_id>/treasury/<str:kind>/",
                self.admin_site.admin_view(self.treasury_file),
                name="claims_payoutbatch_treasury",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="treasury files")
    def files(self, batch):
        return format_html(
            '<a href="{}">CSV</a> · <a href="{}">JSON</a>',
            *(reverse("admin:claims_payoutbatch_treasury", args=[batch.pk, kind]) for kind in ("csv", "json")),
        )

    def treasury_file(self, request, batch_id: int, kind: str):
        batch = get_object_or_404(PayoutBatch.objects.select_related("incident"), pk=batch_id)
        if not self.has_view_permission(request, batch) or kind not in ("csv", "json"):
            raise PermissionDenied
        name, text = next(
            (n, t) for n, t in services.payout_files_render(batch=batch).items() if n.endswith(f".{kind}")
        )
        response = HttpResponse(text.encode(), content_type="text/csv" if kind == "csv" else "application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class EntryInline(ViewOnlyInline):
    model = PayoutLineItem
    fields = ["item", "version", "amount", "is_holding"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item")


class ConfirmationForm(forms.Form):
    file = forms.FileField(
        help_text="Treasury's CSV: lineKey,status,transactionId,confirmedAt. The whole file is "
        "checked first; any error rejects all of it."
    )


@admin.register(PayoutLine)
class PayoutLineAdmin(QueueRows, DetectedAdmin):
    audit_object_type = "payout_line"
    list_display = ["key", "user_id", "amount_shown", "status", "transaction_id", "confirmed_at"]
    amount_shown = amount_column("amount", "asset", "amount")
    list_filter = ["status", "batch__incident", "asset"]
    search_fields = ["=key", "=user_id", "=transaction_id"]
    readonly_fields = [f.name for f in PayoutLine._meta.fields]
    inlines = [EntryInline]
    actions = ["release"]
    change_list_template = "admin/claims/payoutline/change_list.html"

    def get_urls(self):
        return [
            path("confirm/", self.admin_site.admin_view(self.confirm_view), name="claims_payoutline_confirm"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "may_pay": may_pay(request)})

    @admin.action(description="Release failed lines…", permissions=["pay"])
    def release(self, request, queryset):
        form, page = ask(self, request, queryset, form_class=ReasonForm, title="Release failed lines", action="release")
        if form is None:
            return page
        each(
            request,
            "Release",
            queryset.values_list("key", flat=True),
            lambda key: services.payout_line_release(
                key=key, actor=actor_of(request), reason=form.cleaned_data["reason"]
            ),
        )
        return None

    def confirm_view(self, request):
        """Record a confirmation file from treasury (finance)."""
        if not may_pay(request):
            raise PermissionDenied
        form = ConfirmationForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                recorded = services.payouts_confirm(
                    content=upload.read(), file_name=upload.name, actor=actor_of(request)
                )
            except Refused as exc:
                for error in getattr(exc, "errors", [str(exc)]):
                    messages.error(request, error)
            else:
                messages.success(
                    request,
                    f"{upload.name}: {recorded.paid} line(s) paid, {recorded.failed} failed, "
                    f"{recorded.unchanged} already recorded.",
                )
                return redirect("admin:claims_payoutline_changelist")
        return TemplateResponse(
            request,
            "admin/claims/confirm_payouts.html",
            {
                **self.admin_site.each_context(request),
                "title": "Record a confirmation file from treasury",
                "form": form,
                "opts": self.model._meta,
            },
        )


@admin.register(PayoutConfirmation)
class PayoutConfirmationAdmin(DetectedAdmin):
    list_display = ["file_name", "recorded_by", "recorded_at", "rows", "paid", "failed", "unchanged", "sha256"]
    readonly_fields = [f.name for f in PayoutConfirmation._meta.fields]


class PayoutIncidentActions:
    """IncidentAdmin's finance actions: a payout batch, and the reconciliation report."""

    @admin.action(description="Create a payout batch of its approved items (finance)", permissions=["pay"])
    def payout_batch(self, request, queryset):
        for incident in queryset:
            try:
                batch = services.payout_batch_create(incident=incident, actor=actor_of(request))
            except Refused as exc:
                messages.error(request, f"{incident.slug}: {exc}")
                continue
            if batch is None:
                messages.info(request, f"{incident.slug}: no approved item to pay.")
            else:
                messages.success(
                    request,
                    format_html(
                        '{}: batch {} created with {} line(s); <a href="{}">its treasury files</a>.',
                        incident.slug,
                        batch.number,
                        batch.lines.count(),
                        reverse("admin:claims_payoutbatch_change", args=[batch.pk]),
                    ),
                )

    @admin.action(description="Reconcile payouts with the ledger (finance; CSV)", permissions=["pay"])
    def reconcile(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Reconcile: select exactly one incident.")
            return None
        incident: Incident = queryset.get()
        rows = services.reconcile(incident=incident)
        messages.info(request, f"{incident.slug}: {len(rows)} difference(s) with the ledger.")
        response = HttpResponse(services.reconciliation_csv(rows).encode(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{incident.slug}-reconciliation.csv"'
        return response
