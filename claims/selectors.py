"""Reads of incidents, items, payouts and e-mail received."""

from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal

from django.db import connection
from django.db.models import F, Prefetch, QuerySet
from django.db.models.functions import Collate

from exchange import selectors as ledger

from .detectors import quantize
from .models import (
    AuditRecord,
    Claim,
    DetectionRun,
    InboundMessage,
    Incident,
    Item,
    PayoutBatch,
    PayoutLine,
    PayoutLineItem,
)


def incident_get(*, slug: str) -> Incident | None:
    return Incident.objects.filter(slug=slug).first()


def item_list(*, incident: Incident) -> QuerySet[Item]:
    return Item.objects.filter(incident=incident)


EXPORT_HEADER = ["incident", "userId", "kind", "reference", "asset", "amount", "status"]


def item_export_iter(*, incident: Incident) -> Iterator[list[str]]:
    """The policy's "Items export": sorted by userId as a number, then kind, reference, asset as
    text, by code point (the "C" collation on PostgreSQL; SQLite's own compares the same way).
    Streamed from the database in batches, so memory does not grow with the number of items."""
    decimals = ledger.asset_decimals()
    text = (lambda name: Collate(F(name), "C")) if connection.vendor == "postgresql" else F
    items = (item_list(incident=incident)
             .order_by("user_id", text("kind").asc(), text("reference").asc(), text("asset").asc())
             .values_list("user_id", "kind", "reference", "asset", "amount", "status"))
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
    return {"per_kind": dict(sorted(per_kind.items())), "owed": dict(sorted(owed.items())),
            "needs_review": needs_review, "flagged": item_list(incident=incident).filter(flagged_at__isnull=False)
            .count()}


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


# --- e-mail received (email-intake.md) ---

EXPORT_LISTS = ("symbols", "tradeIds", "orderIds", "withdrawalIds", "txHashes", "amounts")


def inbound_list(*, incident: Incident | None = None) -> QuerySet:
    """Messages in the order received, without their raw bytes or text (never needed for a list),
    with their claims and, for a duplicate, its original's."""
    messages = (InboundMessage.objects.select_related("claim", "duplicate_of__claim")
                .defer("raw", "text", "duplicate_of__raw", "duplicate_of__text").order_by("id"))
    return messages if incident is None else messages.filter(incident=incident)


def inbound_export_line(message: InboundMessage) -> dict:
    """One message as `export_inbound` writes it (email-intake.md, "Export"); the admin and the
    staff API list the same. A duplicate concerns its original's account and claim, read from the
    original (which staff may have had parsed again since)."""
    extracted = message.extracted or {}
    concerned = message.duplicate_of if message.duplicate_of_id else message
    return {
        "messageId": f"<{message.message_id}>" if message.message_id is not None else None,
        "sha256": message.sha256, "outcome": message.outcome, "userId": concerned.user_id,
        "claim": str(concerned.claim.public_id) if concerned.claim_id else None, "kind": extracted.get("kind"),
        **{name: extracted.get(name, []) for name in EXPORT_LISTS},
        "attachments": [{"filename": a["filename"], "contentType": a["contentType"], "size": a["size"]}
                        for a in message.attachments],
        "ignoredReason": message.ignored_reason or None,
    }


def inbound_export_iter(*, incident: Incident | None = None) -> Iterator[dict]:
    """Every message's export line, streamed in batches: memory does not grow with the mailbox."""
    for message in inbound_list(incident=incident).iterator(chunk_size=2000):
        yield inbound_export_line(message)
