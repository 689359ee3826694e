"""Reads of incidents, items, payouts and e-mail received."""

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Case as SqlCase
from django.db.models import CharField, Count, F, Prefetch, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Collate, TruncDate

from exchange import selectors as ledger

from .detectors import quantize
from .models import (
    AuditRecord,
    Claim,
    DetectionRun,
    Finding,
    InboundMessage,
    Incident,
    Item,
    ItemApproval,
    Notification,
    PayoutBatch,
    PayoutLine,
    PayoutLineItem,
)


def incident_get(*, slug: str) -> Incident | None:
    return Incident.objects.filter(slug=slug).first()


def incidents_open_for_claims(*, now) -> QuerySet[Incident]:
    return Incident.objects.filter(claims_close__gte=now).order_by("-window_start")


def item_list(
    *, incident: Incident, status: str | None = None, kind: str | None = None, user_id: int | None = None
) -> QuerySet[Item]:
    items = Item.objects.filter(incident=incident)
    for name, value in (("status", status), ("kind", kind), ("user_id", user_id)):
        if value is not None:
            items = items.filter(**{name: value})
    return items


def claim_list(
    *, user_id: int | None = None, status: str | None = None, kind: str | None = None, incident_slug: str | None = None
) -> QuerySet[Claim]:
    """Claims newest first, with their incident, the claim they were merged into and their items;
    a front-end call sees only its user's (user_id), staff every claim."""
    claims = (
        Claim.objects.select_related("incident", "merged_into")
        .prefetch_related(Prefetch("items", queryset=Item.objects.order_by("kind", "reference")))
        .order_by("-id")
    )
    for lookup, value in (("user_id", user_id), ("status", status), ("kind", kind), ("incident__slug", incident_slug)):
        if value is not None:
            claims = claims.filter(**{lookup: value})
    return claims


EXPORT_HEADER = ["incident", "userId", "kind", "reference", "asset", "amount", "status"]


def item_export_iter(*, incident: Incident) -> Iterator[list[str]]:
    """The policy's "Items export": sorted by userId as a number, then kind, reference, asset as
    text, by code point (the "C" collation on PostgreSQL; SQLite's own compares the same way).
    Streamed from the database in batches, so memory does not grow with the number of items."""
    decimals = ledger.asset_decimals()
    text = (lambda name: Collate(F(name), "C")) if connection.vendor == "postgresql" else F
    items = (
        item_list(incident=incident)
        .order_by("user_id", text("kind").asc(), text("reference").asc(), text("asset").asc())
        .values_list("user_id", "kind", "reference", "asset", "amount", "status")
    )
    for user_id, kind, reference, asset, amount, status in items.iterator(chunk_size=5000):
        shown = "" if amount is None else f"{quantize(amount, decimals[asset]):f}"
        yield [incident.slug, str(user_id), kind, reference, asset, shown, status]


def item_export_rows(*, incident: Incident) -> list[list[str]]:
    return list(item_export_iter(incident=incident))


def item_summary(*, incident: Incident) -> dict:
    """Items per kind, total owed per asset (needs-review items have no amount), needs-review count."""
    per_kind: Counter = Counter()
    owed: dict[str, Decimal] = defaultdict(Decimal)
    needs_review = 0
    for kind, asset, amount, status in item_list(incident=incident).values_list("kind", "asset", "amount", "status"):
        per_kind[kind] += 1
        if status == Item.Status.NEEDS_REVIEW:
            needs_review += 1
        elif status != Item.Status.REJECTED:
            owed[asset] += amount
    return {
        "per_kind": dict(sorted(per_kind.items())),
        "owed": dict(sorted(owed.items())),
        "needs_review": needs_review,
        "flagged": item_list(incident=incident).filter(flagged_at__isnull=False).count(),
    }


def detection_run_latest(*, incident: Incident) -> DetectionRun | None:
    return incident.detection_runs.order_by("-id").first()


def history_of(*, object_type: str, object_ids) -> dict[int, list[AuditRecord]]:
    """Each object's records in the audit trail, oldest first, in one query."""
    history: dict[int, list[AuditRecord]] = defaultdict(list)
    for record in AuditRecord.objects.filter(object_type=object_type, object_id__in=list(object_ids)).order_by("id"):
        history[record.object_id].append(record)
    return history


def claims_with_history(claims) -> list[Claim]:
    """The claims, each with `history`: its records in the audit trail (read as transitions)."""
    claims = list(claims)
    history = history_of(object_type="claim", object_ids=[claim.id for claim in claims])
    for claim in claims:
        claim.history = history.get(claim.id, [])
    return claims


# --- approvals ---


def items_undecided(*, incident: Incident, user_id: int | None = None, kind: str | None = None) -> list[tuple]:
    """(id, USDC value) of the undecided items, in id order."""
    items = item_list(incident=incident).filter(status__in=Item.UNDECIDED)
    if user_id is not None:
        items = items.filter(user_id=user_id)
    if kind is not None:
        items = items.filter(kind=kind)
    return list(items.order_by("id").values_list("id", "usdc_value"))


# --- payouts ---


def payout_items_unbatched(*, incident: Incident, asset: str | None = None) -> QuerySet[Item]:
    """What a batch takes: the incident's approved items (of one asset, if given) in no live or
    held payout line (an item of a released line is free again)."""
    items = Item.objects.filter(incident=incident, status=Item.Status.APPROVED)
    if asset:
        items = items.filter(asset=asset)
    return items.exclude(payout_entries__is_holding=True)


def payout_batch_get(*, incident: Incident, number: int) -> PayoutBatch | None:
    return PayoutBatch.objects.select_related("incident").filter(incident=incident, number=number).first()


def payout_line_list(*, incident: Incident | None = None, batch: PayoutBatch | None = None) -> QuerySet[PayoutLine]:
    """Lines in key order: batch number, then line number, as numbers."""
    lines = PayoutLine.objects.select_related("batch")
    if incident is not None:
        lines = lines.filter(batch__incident=incident)
    if batch is not None:
        lines = lines.filter(batch=batch)
    return lines.order_by("batch__number", "number")


def payout_line_list_with_items(*, batch: PayoutBatch) -> QuerySet[PayoutLine]:
    """A batch's lines in key order, each with its entries and their items (for the treasury files)."""
    entries = PayoutLineItem.objects.select_related("item").order_by("id")
    return payout_line_list(batch=batch).prefetch_related(Prefetch("entries", queryset=entries))


# --- the staff workspace: the case page and the dashboard ---

CASE_EVENTS_BEFORE = timedelta(hours=24)  # withdrawals qualify from a day before the window (the policy)


@dataclass
class Case:
    """Everything about one claimant in one incident, for the case page."""

    incident: Incident
    user_id: int
    account: object | None
    claims: list[Claim]
    items: list[Item]
    findings: list[Finding]
    events: list[dict]
    records: list[AuditRecord]
    live_lines: dict[int, str]  # item id -> key of the live or held payout line holding it
    decimals: dict[str, int]


def case_get(*, incident: Incident, user_id: int) -> Case:
    """One claimant's case in a fixed number of queries, however many claims, items and records."""
    claims = list(
        Claim.objects.filter(incident=incident, user_id=user_id)
        .select_related("assigned_to")
        .prefetch_related("attachments", Prefetch("notifications", queryset=Notification.objects.order_by("id")))
        .order_by("id")
    )
    items = list(
        Item.objects.filter(incident=incident, user_id=user_id)
        .prefetch_related(
            Prefetch("approvals", queryset=ItemApproval.objects.order_by("version", "slot")),
            Prefetch("claims", queryset=Claim.objects.only("id", "incident_id")),
        )
        .order_by("kind", "reference", "asset")
    )
    approval_ids = [a.id for item in items for a in item.approvals.all()]
    records = list(
        AuditRecord.objects.filter(
            Q(object_type="claim", object_id__in=[c.id for c in claims])
            | Q(object_type="item", object_id__in=[i.id for i in items])
            | Q(object_type="approval", object_id__in=approval_ids)
        ).order_by("-id")[:500]
    )
    lines = dict(PayoutLineItem.objects.filter(item__in=items, is_holding=True).values_list("item_id", "line__key"))
    return Case(
        incident=incident,
        user_id=user_id,
        account=ledger.account_get(user_id),
        claims=claims,
        items=items,
        findings=list(Finding.objects.filter(incident=incident, user_id=user_id).order_by("kind", "reference")),
        events=ledger.user_events_between(
            user_id, incident.window_start - CASE_EVENTS_BEFORE, max(incident.evaluation_end, incident.window_end)
        ),
        records=records,
        live_lines=lines,
        decimals=ledger.asset_decimals(),
    )


def incident_for_dashboard(*, slug: str | None) -> Incident | None:
    """The incident asked for, or the latest one."""
    incidents = Incident.objects.order_by("-window_start", "-id")
    return (incidents.filter(slug=slug).first() if slug else None) or incidents.first()


AGE_BUCKETS = (("under 1 day", 0, 1), ("1–3 days", 1, 3), ("3–7 days", 3, 7), ("over 7 days", 7, None))


def dashboard_get(*, incident: Incident, now) -> dict:
    """The incident's figures, each aggregated by the database (a handful of GROUP BYs)."""
    money: dict[tuple, dict] = {}
    for asset, kind, status, total in (
        Item.objects.filter(incident=incident, amount__isnull=False)
        .values_list("asset", "kind", "status")
        .annotate(total=Sum("amount"))
        .order_by()
    ):
        row = money.setdefault((asset, kind), {"owed": Decimal(0), "approved": Decimal(0), "paid": Decimal(0)})
        if status != Item.Status.REJECTED:
            row["owed"] += total
        if status == Item.Status.APPROVED:
            row["approved"] += total
        if status == Item.Status.PAID:
            row["paid"] += total
    for row in money.values():
        row["outstanding"] = row["owed"] - row["paid"]
    age = SqlCase(
        *[
            When(created_at__gt=now - timedelta(days=high), then=Value(label))
            for label, _, high in AGE_BUCKETS
            if high is not None
        ],
        default=Value(AGE_BUCKETS[-1][0]),
        output_field=CharField(),
    )
    queue = Counter(
        {
            (bucket, tier): n
            for bucket, tier, n in (
                Item.objects.filter(incident=incident, status__in=Item.UNDECIDED)
                .annotate(bucket=age)
                .values_list("bucket", "approval")
                .annotate(n=Count("id"))
                .order_by()
            )
        }
    )
    per_day = Counter(
        {
            (day, channel): n
            for day, channel, n in (
                Claim.objects.filter(incident=incident)
                .annotate(day=TruncDate("created_at"))
                .values_list("day", "channel")
                .annotate(n=Count("id"))
                .order_by()
            )
        }
    )
    counts = Item.objects.filter(incident=incident).aggregate(
        needs_review=Count("id", filter=Q(status=Item.Status.NEEDS_REVIEW)),
        flagged=Count("id", filter=Q(flagged_at__isnull=False)),
        undecided=Count("id", filter=Q(status__in=Item.UNDECIDED)),
    )
    return {
        "money": dict(sorted(money.items())),
        "queue": queue,
        "per_day": per_day,
        **counts,
        "claims_unassigned": Claim.objects.filter(
            incident=incident, assigned_to__isnull=True, status__in=CLAIMS_OPEN
        ).count(),
        "runs": list(incident.detection_runs.filter(status=DetectionRun.Status.RUNNING).order_by("-id")),
        "imports": ledger.import_runs_recent(),
        "decimals": ledger.asset_decimals(),
    }


CLAIMS_OPEN = (
    Claim.Status.RECEIVED,
    Claim.Status.MATCHED,
    Claim.Status.UNMATCHED,
    Claim.Status.NO_LOSS,
    Claim.Status.IN_REVIEW,
)


def incident_list() -> list[Incident]:
    return list(Incident.objects.order_by("-window_start", "-id"))


def payout_lines_paid(*, item_ids) -> list[PayoutLine]:
    """The paid payout lines holding any of these items, oldest first."""
    return list(
        PayoutLine.objects.filter(status=PayoutLine.Status.PAID, entries__item_id__in=list(item_ids))
        .distinct()
        .order_by("confirmed_at", "id")
    )


# --- e-mail received (email-intake.md) ---

EXPORT_LISTS = ("symbols", "tradeIds", "orderIds", "withdrawalIds", "txHashes", "amounts")


def inbound_list(*, incident: Incident | None = None) -> QuerySet:
    """Messages in the order received, without their raw bytes or text (never needed for a list),
    with their claims and, for a duplicate, its original's."""
    messages = (
        InboundMessage.objects.select_related("claim", "duplicate_of__claim")
        .defer("raw", "text", "duplicate_of__raw", "duplicate_of__text")
        .order_by("id")
    )
    return messages if incident is None else messages.filter(incident=incident)


def inbound_export_line(message: InboundMessage) -> dict:
    """One message as `export_inbound` writes it (email-intake.md, "Export"); the admin and the
    staff API list the same. A duplicate concerns its original's account and claim, read from the
    original (which staff may have had parsed again since)."""
    extracted = message.extracted or {}
    concerned = message.duplicate_of if message.duplicate_of_id else message
    return {
        "messageId": f"<{message.message_id}>" if message.message_id is not None else None,
        "sha256": message.sha256,
        "outcome": message.outcome,
        "userId": concerned.user_id,
        "claim": str(concerned.claim.public_id) if concerned.claim_id else None,
        "kind": extracted.get("kind"),
        **{name: extracted.get(name, []) for name in EXPORT_LISTS},
        "attachments": [
            {"filename": a["filename"], "contentType": a["contentType"], "size": a["size"]} for a in message.attachments
        ],
        "ignoredReason": message.ignored_reason or None,
    }


def inbound_export_iter(*, incident: Incident | None = None) -> Iterator[dict]:
    """Every message's export line, streamed in batches: memory does not grow with the mailbox."""
    for message in inbound_list(incident=incident).iterator(chunk_size=2000):
        yield inbound_export_line(message)
