"""The review queue's shared parts: filters, search by what claimants quote, amounts to the asset's
decimals, and a CSV of any filtered list. Every column comes from the list's one query (joins,
subqueries) or from one query per page (the assets' decimals), so a page costs the same number of
queries for 10 rows or 200."""

import csv
from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from exchange import selectors as ledger

from ..models import Claim, ClaimItem, Item, ItemApproval
from ..money import amount_text
from ..roles import APPROVER, roles_of

# --- columns ---


def age_text(created_at, now) -> str:
    seconds = max(int((now - created_at).total_seconds()), 0)
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def case_link(incident_id: int, user_id: int, text=None):
    return format_html(
        '<a href="{}" title="Open the case">{}</a>',
        reverse("admin:claims_case", args=[incident_id, user_id]),
        text if text is not None else user_id,
    )


class QueueChangeList(ChangeList):
    """Gives each row of the page the assets' decimals and the time (one query per page), for the
    columns that format amounts and ages."""

    def get_results(self, request):
        super().get_results(request)
        decimals, now = ledger.asset_decimals(), timezone.now()
        for row in self.result_list:
            row.decimals, row.now = decimals, now


class QueueRows:
    """ModelAdmin mixin: rows that know their assets' decimals and the time."""

    def get_changelist(self, request, **kwargs):
        return QueueChangeList

    def decimals(self, request) -> dict[str, int]:
        return ledger.asset_decimals()


def approvals_given():
    """Approvals of each item's current version, as a subquery."""
    return Coalesce(
        Subquery(
            ItemApproval.objects.filter(item=OuterRef("pk"), version=OuterRef("version"))
            .order_by()
            .values("item")
            .annotate(n=Count("id"))
            .values("n"),
            output_field=IntegerField(),
        ),
        Value(0),
    )


def first_claim(field: str):
    """A field of the first claim pointing at the item (most items have one claim, or none)."""
    return Subquery(ClaimItem.objects.filter(item=OuterRef("pk")).order_by("claim_id").values(f"claim__{field}")[:1])


# --- filters ---


class ChoiceFilter(admin.SimpleListFilter):
    """A filter given as (value, label, Q) choices."""

    options: list[tuple] = []

    def lookups(self, request, model_admin):
        return [(value, label) for value, label, _ in self.options]

    def queryset(self, request, queryset):
        for value, _, condition in self.options:
            if self.value() == value:
                return queryset.filter(condition(request) if callable(condition) else condition)
        return queryset


class FlaggedFilter(ChoiceFilter):
    title, parameter_name = "flagged by detection", "flagged"
    options = [("yes", "flagged", Q(flagged_at__isnull=False)), ("no", "not flagged", Q(flagged_at__isnull=True))]


class ClaimFlaggedFilter(ChoiceFilter):
    title, parameter_name = "flagged by detection", "flagged"
    options = [
        (
            "yes",
            "an item is flagged",
            Q(Exists(ClaimItem.objects.filter(claim=OuterRef("pk"), item__flagged_at__isnull=False))),
        )
    ]


class NeedsReviewFilter(ChoiceFilter):
    title, parameter_name = "needs review", "review"
    options = [("yes", "needs review (no amount)", Q(status=Item.Status.NEEDS_REVIEW))]


class ClaimNeedsReviewFilter(ChoiceFilter):
    title, parameter_name = "needs review", "review"
    options = [
        (
            "yes",
            "unmatched, or an item needs review",
            Q(status=Claim.Status.UNMATCHED)
            | Q(Exists(ClaimItem.objects.filter(claim=OuterRef("pk"), item__status=Item.Status.NEEDS_REVIEW))),
        )
    ]


def _ages(field: str) -> list[tuple]:
    def since(days: int):
        return lambda request: Q(**{f"{field}__gte": timezone.now() - timedelta(days=days)})

    def before(days: int):
        return lambda request: Q(**{f"{field}__lt": timezone.now() - timedelta(days=days)})

    return [
        ("1", "today (under 1 day)", since(1)),
        ("3", "under 3 days", since(3)),
        ("old3", "older than 3 days", before(3)),
        ("old7", "older than 7 days", before(7)),
    ]


class AgeFilter(ChoiceFilter):
    title, parameter_name = "age", "age"
    options = _ages("created_at")


def _usdc(prefix: str = "") -> list[tuple]:
    field = f"{prefix}usdc_value"
    return [
        ("100", "up to 100 USDC", Q(**{f"{field}__lte": 100})),
        ("10k", "100 to 10,000 USDC", Q(**{f"{field}__gt": 100, f"{field}__lte": 10000})),
        ("big", "over 10,000 USDC", Q(**{f"{field}__gt": 10000})),
        ("unknown", "value unknown", Q(**{f"{field}__isnull": True})),
    ]


class AmountFilter(ChoiceFilter):
    title, parameter_name = "amount (USDC value)", "value"
    options = _usdc()


class ClaimAmountFilter(ChoiceFilter):
    title, parameter_name = "amount found (USDC value)", "value"
    options = [
        (value, label, Q(Exists(ClaimItem.objects.filter(condition, claim=OuterRef("pk")))))
        for value, label, condition in _usdc("item__")
    ]


def waiting_for(user) -> Q:
    """Items this person may approve now (payouts.md): undecided with an amount, not flagged, not
    their own amount, not yet approved by them; a second approval by support only after an
    approver's first. The approvals are read as uncorrelated `NOT IN`s, which PostgreSQL hashes
    once instead of probing per item."""
    current = ItemApproval.objects.filter(version=F("item__version"))
    condition = (
        Q(status=Item.Status.COMPUTED, flagged_at__isnull=True)
        & ~Q(amount_set_by=user.get_username())
        & ~Q(pk__in=current.filter(approver=user).values("item_id"))
    )
    if APPROVER not in roles_of(user):
        condition &= ~Q(
            pk__in=current.filter(is_approver_role=False, item__approval=Item.Approval.TWO).values("item_id")
        )
    return condition


class WaitingForMeFilter(ChoiceFilter):
    title, parameter_name = "waiting for me", "mine"
    options = [
        ("approve", "I may approve it now", lambda request: waiting_for(request.user)),
        (
            "assigned",
            "its claim is assigned to me",
            lambda request: Q(Exists(ClaimItem.objects.filter(item=OuterRef("pk"), claim__assigned_to=request.user))),
        ),
    ]


class ClaimWaitingForMeFilter(ChoiceFilter):
    title, parameter_name = "waiting for me", "mine"
    options = [
        ("assigned", "assigned to me", lambda request: Q(assigned_to=request.user)),
        (
            "approve",
            "an item I may approve now",
            lambda request: Q(Exists(Item.objects.filter(waiting_for(request.user), claims=OuterRef("pk")))),
        ),
        ("nobody", "assigned to nobody", Q(assigned_to__isnull=True)),
    ]


class ChannelFilter(ChoiceFilter):
    title, parameter_name = "channel", "channel"
    options = [
        (c, label, Q(Exists(ClaimItem.objects.filter(item=OuterRef("pk"), claim__channel=c))))
        for c, label in Claim.Channel.choices
    ] + [("none", "no claim (found by detection)", ~Q(Exists(ClaimItem.objects.filter(item=OuterRef("pk")))))]


class LanguageFilter(ChoiceFilter):
    title, parameter_name = "language", "language"
    options = [
        (code, label, Q(Exists(ClaimItem.objects.filter(item=OuterRef("pk"), claim__language=code))))
        for code, label in (("en", "English"), ("zh-hans", "简体中文"), ("pt-br", "Português"))
    ]


# --- search: what a claimant quotes ---


def search_terms(term: str) -> dict:
    """Account ids, claim ids, trade / order / withdrawal ids and transaction hashes a term may be."""
    term = term.strip()
    found = {"user_ids": set(), "claim_ids": set(), "trade_ids": set(), "withdrawal_ids": set(), "text": term}
    if not term:
        return found
    if term.upper().startswith("CD-") and term[3:].isdigit():
        found["claim_ids"].add(int(term[3:]))
        return found
    if term.isdigit() and len(term) <= 18:
        number = int(term)
        found["user_ids"].add(number)
        found["trade_ids"].add(number)
        found["withdrawal_ids"].add(number)
    matches = ledger.ledger_search(term)
    found["user_ids"].update(matches["user_ids"])
    found["trade_ids"].update(matches["trade_ids"])
    found["withdrawal_ids"].update(matches["withdrawal_ids"])
    return found


def item_search(term: str) -> Q:
    found = search_terms(term)
    condition = Q(user_id__in=found["user_ids"]) | Q(reference=found["text"])
    condition |= Q(reference__in=[f"withdrawal:{w}" for w in found["withdrawal_ids"]])
    for trade_id in found["trade_ids"]:
        condition |= Q(reference__in=[f"fill:{trade_id}:Bid", f"fill:{trade_id}:Ask"])
    if found["claim_ids"]:
        condition |= Q(Exists(ClaimItem.objects.filter(item=OuterRef("pk"), claim_id__in=found["claim_ids"])))
    return condition


def claim_search(term: str) -> Q:
    found = search_terms(term)
    text = found["text"]
    return (
        Q(id__in=found["claim_ids"])
        | Q(user_id__in=found["user_ids"])
        | Q(trade_id__in=found["trade_ids"])
        | Q(withdrawal_id__in=found["withdrawal_ids"])
        | Q(order_id=text)
        | Q(transaction_hash=text)
    )


class QueueSearch:
    """ModelAdmin mixin: one search box for account id, e-mail, claim number, trade, order or
    withdrawal id and transaction hash (`queue_search(term) -> Q`)."""

    search_fields = ["=id"]  # shows the box; the search itself is get_search_results below
    search_help_text = "Account id, e-mail, claim number (CD-…), trade, order or withdrawal id, transaction hash"

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(type(self).queue_search(search_term)), False


# --- CSV of the filtered list ---


class Echo:
    def write(self, value):
        return value


class CsvExport:
    """ModelAdmin mixin: `export/?<the list's filters>` answers the whole filtered list as CSV
    (`csv_columns`: (header, function of the row)), streamed in batches."""

    csv_columns: list[tuple] = []

    def get_urls(self):
        opts = self.model._meta
        return [
            path(
                "export/",
                self.admin_site.admin_view(self.csv_export),
                name=f"{opts.app_label}_{opts.model_name}_export",
            ),
            *super().get_urls(),
        ]

    def csv_export(self, request):
        from django.core.exceptions import PermissionDenied

        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = self.get_changelist_instance(request).queryset
        writer = csv.writer(Echo(), lineterminator="\n")
        decimals = self.decimals(request)

        def lines():
            yield writer.writerow([header for header, _ in self.csv_columns])
            for row in rows.iterator(chunk_size=2000):
                yield writer.writerow([value(row, decimals) for _, value in self.csv_columns])

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self.model._meta.model_name}s.csv"'
        return response

    def changelist_view(self, request, extra_context=None):
        opts = self.model._meta
        export = reverse(f"admin:{opts.app_label}_{opts.model_name}_export")
        query = request.GET.urlencode()
        return super().changelist_view(
            request, {**(extra_context or {}), "export_url": f"{export}?{query}" if query else export}
        )


def plain(amount, decimals: int | None) -> str:
    return amount_text(amount, decimals, grouped=False)


def amount_column(field: str, asset_field: str, label: str):
    """An admin column or read-only field showing `field` to the decimals of the asset in
    `asset_field` (a row of the queue knows them; elsewhere they are read, once per request)."""

    @admin.display(description=label, ordering=field)
    def shown(self, obj):
        value, asset = getattr(obj, field), getattr(obj, asset_field) if asset_field else "USDC"
        if value is None:
            return "–"
        decimals = getattr(obj, "decimals", None) or ledger.asset_decimals()
        return f"{amount_text(value, 2 if not asset_field else decimals.get(asset))} {asset}"

    return shown
