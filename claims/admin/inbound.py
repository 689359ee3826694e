"""E-mail received: the list `export_inbound` writes, each message's outcome and claim, what was
read from it, and its raw bytes shown safely. Everything that came in a message is text to us:
shown escaped (format_html), never rendered; the raw bytes and attachments download as
`application/octet-stream` attachments, never shown inline."""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header

from .. import services
from ..inbound import header_safe, parse
from ..models import InboundMessage
from ..roles import Refused
from ..selectors import inbound_export_line
from .actions import actor_of, may_approve
from .base import DetectedAdmin

RAW_SHOWN = 200_000  # characters of the raw message shown on its page; the download has all of it


@admin.register(InboundMessage)
class InboundMessageAdmin(DetectedAdmin):
    audit_object_type = "inbound_message"
    list_display = [
        "id",
        "received_at",
        "outcome",
        "ignored_reason",
        "from_address",
        "subject_line",
        "user_id",
        "claim_link",
        "source",
    ]
    list_filter = ["outcome", "ignored_reason", "is_verified", "source", "incident"]
    search_fields = ["=user_id", "=from_address", "=sha256", "subject"]
    list_select_related = ["claim"]
    actions = ["parse_again"]
    change_list_template = "admin/claims/inboundmessage/change_list.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "received",
                    "outcome",
                    "ignored_reason",
                    "user_id",
                    "claim_link",
                    "duplicate_of",
                    "problems_list",
                ]
            },
        ),
        (
            "What was read",
            {
                "fields": [
                    "sender",
                    "subject",
                    "message_id",
                    "thread",
                    "is_verified",
                    "text_shown",
                    "attachments_list",
                    "export_line",
                ]
            },
        ),
        ("As received", {"fields": ["sha256", "size", "envelope_sender", "raw_shown"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]  # all of them

    def get_queryset(self, request):
        # Neither the list nor the page needs every message's bytes; raw_shown reads this one's.
        return super().get_queryset(request).defer("raw")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:message_id>/raw/", view(self.raw_download), name="claims_inboundmessage_raw"),
            path(
                "<int:message_id>/attachment/<int:position>/",
                view(self.attachment_download),
                name="claims_inboundmessage_attachment",
            ),
            path(
                "parse-again-unparseable/", view(self.parse_again_unparseable), name="claims_inboundmessage_parse_again"
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "may_parse_again": may_approve(request)})

    @admin.display(description="subject")
    def subject_line(self, message):
        return message.subject[:80]

    @admin.display(description="claim")
    def claim_link(self, message):
        if message.claim_id is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:claims_claim_change", args=[message.claim_id]),
            f"claim #{message.claim_id}",
        )

    @admin.display(description="received")
    def received(self, message):
        where = message.esp if message.source == InboundMessage.Source.WEBHOOK else message.mailbox
        return f"{message.received_at:%Y-%m-%d %H:%M:%S} UTC by {message.source} ({where}) {message.place}".strip()

    @admin.display(description="from")
    def sender(self, message):
        return f"{message.from_name} <{message.from_address}>" if message.from_name else message.from_address

    @admin.display(description="In-Reply-To, References")
    def thread(self, message):
        return ", ".join(message.thread_ids) or "-"

    @admin.display(description="text (new text and forwarded text)")
    def text_shown(self, message):
        return format_html('<pre style="white-space: pre-wrap; max-width: 60em">{}</pre>', message.text)

    @admin.display(description="problems")
    def problems_list(self, message):
        return format_html_join("", "<div>{}</div>", ((p,) for p in message.problems)) or "-"

    @admin.display(description="attachments")
    def attachments_list(self, message):
        rows = (
            (
                reverse("admin:claims_inboundmessage_attachment", args=[message.pk, n]),
                a["filename"] or "(no name)",
                a["contentType"],
                a["size"],
                " inline" if a.get("isInline") else "",
                " broken: kept as received" if a.get("isBroken") else "",
            )
            for n, a in enumerate(message.attachments)
        )
        return format_html_join("", '<div><a href="{}">{}</a> {} {} bytes{}{}</div>', rows) or "-"

    @admin.display(description="export line")
    def export_line(self, message):
        return format_html("<pre>{}</pre>", json.dumps(inbound_export_line(message), indent=1, ensure_ascii=False))

    @admin.display(description="raw message (as text; download for the exact bytes)")
    def raw_shown(self, message):
        text = bytes(message.raw).decode("utf-8", "replace")
        more = f"… ({len(text) - RAW_SHOWN} more characters)" if len(text) > RAW_SHOWN else ""
        return format_html(
            '<a href="{}">Download ({} bytes)</a><pre style="white-space: pre-wrap; max-width: 60em">{}{}</pre>',
            reverse("admin:claims_inboundmessage_raw", args=[message.pk]),
            message.size,
            text[:RAW_SHOWN],
            more,
        )

    def _viewable(self, request, message_id: int) -> InboundMessage:
        message = get_object_or_404(InboundMessage, pk=message_id)
        if not self.has_view_permission(request, message):
            raise PermissionDenied
        return message

    def raw_download(self, request, message_id: int):
        message = self._viewable(request, message_id)
        return _download(bytes(message.raw), f"message-{message.pk}.eml")

    def attachment_download(self, request, message_id: int, position: int):
        """The attachment's content, read again from the raw bytes (the message keeps them once)."""
        message = self._viewable(request, message_id)
        attachments = parse(bytes(message.raw)).attachments
        if position >= len(attachments) or position >= len(message.attachments):
            raise Http404("no such attachment")
        attachment = attachments[position]
        return _download(attachment.content, header_safe(attachment.filename) or f"attachment-{position}")

    @admin.action(description="Parse again (unparseable_kept messages only)", permissions=["approve"])
    def parse_again(self, request, queryset):
        self._parse_again(request, queryset.values_list("id", flat=True))

    def parse_again_unparseable(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        ids = InboundMessage.objects.filter(outcome=InboundMessage.Outcome.UNPARSEABLE_KEPT).values_list(
            "id", flat=True
        )
        self._parse_again(request, ids)
        return redirect("admin:claims_inboundmessage_changelist")

    def _parse_again(self, request, ids) -> None:
        ids = list(ids)
        try:
            enqueued = services.inbound_parse_again(message_ids=ids, actor=actor_of(request))
        except Refused as exc:
            messages.error(request, str(exc))
            return
        skipped = len(ids) - len(enqueued)
        messages.success(
            request,
            f"Parse again: {len(enqueued)} message(s) enqueued"
            + (f"; {skipped} skipped (only unparseable_kept ones are parsed again)." if skipped else "."),
        )


def _download(content: bytes, filename: str) -> HttpResponse:
    """Bytes from a message, as a download: never displayed, never sniffed as HTML."""
    response = HttpResponse(content, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response
