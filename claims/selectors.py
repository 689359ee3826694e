"""Reads of incidents and items."""

from collections import Counter, defaultdict
from decimal import Decimal

from django.db.models import QuerySet

from exchange import selectors as ledger

from .detectors import quantize
from .models import DetectionRun, Incident, Item


def incident_get(*, slug: str) -> Incident | None:
    return Incident.objects.filter(slug=slug).first()


def item_list(*, incident: Incident) -> QuerySet[Item]:
    return Item.objects.filter(incident=incident)


EXPORT_HEADER = ["incident", "userId", "kind", "reference", "asset", "amount", "status"]


def item_export_rows(*, incident: Incident) -> list[list[str]]:
    """The policy's "Items export": sorted by userId as a number, then kind, reference, asset as text."""
    decimals = ledger.asset_decimals()
    items = item_list(incident=incident).values_list("user_id", "kind", "reference", "asset", "amount", "status")
    rows = []
    # Sorted here, not in SQL: the database's collation need not be code-point order.
    for user_id, kind, reference, asset, amount, status in sorted(items, key=lambda r: r[:4]):
        shown = "" if amount is None else f"{quantize(amount, decimals[asset]):f}"
        rows.append([incident.slug, str(user_id), kind, reference, asset, shown, status])
    return rows


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
