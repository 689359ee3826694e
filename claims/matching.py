"""Matching a received claim against what the engine found for its claimant."""

from datetime import datetime, timedelta

from django.db import transaction

from . import services
from .detectors import Detected
from .models import Claim, ClaimItem, Item, ItemKind
from .notifications import notify
from .roles import MATCHING

TIME_TOLERANCE = timedelta(minutes=30)
MATCHING_ACTOR = MATCHING.name


def _event_fits(claim: Claim, *, kind: str, reference: str, asset: str, inputs: dict, event_at: datetime) -> bool:
    """Every reference the claim gives must fit the event; a claim with none fits every event of its kind."""
    if kind != claim.kind:
        return False
    checks = [
        (claim.trade_id is not None, lambda: reference.startswith(f"fill:{claim.trade_id}:")),
        (bool(claim.order_id), lambda: str(inputs.get("order_id")) == claim.order_id),
        (claim.withdrawal_id is not None, lambda: reference == f"withdrawal:{claim.withdrawal_id}"),
        (bool(claim.transaction_hash), lambda: inputs.get("transaction_hash") == claim.transaction_hash),
        (bool(claim.market_symbol), lambda: inputs.get("symbol") == claim.market_symbol),
        (bool(claim.claimed_asset) and kind == "missing_funds", lambda: asset == claim.claimed_asset),
        (claim.approximate_time is not None, lambda: abs(event_at - claim.approximate_time) <= TIME_TOLERANCE),
    ]
    return all(test() for given, test in checks if given)


def _happened_at(kind: str, inputs: dict, event_at: datetime | None) -> datetime | None:
    """When the claimant saw it: a position error was made at t0 (event_at is t1, when it was valued)."""
    if kind == "position_error" and inputs.get("t0"):
        return datetime.fromisoformat(inputs["t0"])
    return event_at


def _item_fits(claim: Claim, item: Item) -> bool:
    happened_at = _happened_at(item.kind, item.inputs, item.event_at)
    return happened_at is not None and _event_fits(
        claim, kind=item.kind, reference=item.reference, asset=item.asset, inputs=item.inputs, event_at=happened_at
    )


def _detected_fits(claim: Claim, event: Detected) -> bool:
    return _event_fits(
        claim,
        kind=event.kind,
        reference=event.reference,
        asset=event.asset,
        inputs=event.inputs,
        event_at=_happened_at(event.kind, event.inputs, event.event_at),
    )


def _describe(kind: str, reference: str, asset: str, amount) -> dict:
    return {"kind": kind, "reference": reference, "asset": asset, "amount": None if amount is None else str(amount)}


def claim_match(*, claim_id: int) -> str | None:
    """Merge a repeated claim into the first, or acknowledge a received claim and link it to its
    items; the outcome is merged, matched, no_loss or unmatched.

    Idempotent: a claim that is no longer `received` has been matched already.
    """
    filed = Claim.objects.filter(id=claim_id).values("incident_id", "user_id").get()
    with transaction.atomic():
        # The claimant's items first, then their claims: every writer locks in this order (items,
        # then claims), so matching and an approval of the same user's items never deadlock.
        list(
            Item.objects.select_for_update()
            .filter(incident_id=filed["incident_id"], user_id=filed["user_id"])
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Every claim of the claimant, locked in the order they were filed: the matching of two of
        # them at once is serialized, so a repeated claim is merged exactly once.
        claims = list(
            Claim.objects.select_for_update(of=("self",))
            .select_related("incident")
            .filter(incident_id=filed["incident_id"], user_id=filed["user_id"])
            .order_by("id")
        )
        claim = next(c for c in claims if c.id == claim_id)
        if claim.status != Claim.Status.RECEIVED:
            return None
        if (
            services.claim_merge_if_repeated(claim, [c for c in claims if c.id != claim_id], actor=MATCHING_ACTOR)
            is not None
        ):
            return Claim.Status.MERGED
        # Looked up, not assumed new: a claim received before this release was acknowledged when filed.
        notify(key=f"claim:{claim.id}:acknowledgement", kind="acknowledgement", user_id=claim.user_id, claim=claim)
        incident = claim.incident
        # Detection for the claimant (one user: milliseconds), so the items are current.
        results = services.items_detect_and_save(incident=incident, user_ids=[claim.user_id], run=None)
        evaluated, _ = results[claim.user_id]
        # Detected items only: an amount staff set (kind other) belongs to its own claim.
        items = list(
            Item.objects.filter(incident=incident, user_id=claim.user_id)
            .exclude(kind=ItemKind.OTHER)
            .order_by("kind", "reference")
        )
        fitting = [item for item in items if _item_fits(claim, item)]
        if fitting:
            ClaimItem.objects.bulk_create(
                [ClaimItem(claim=claim, item=item) for item in fitting], ignore_conflicts=True
            )
            outcome, reason = Claim.Status.MATCHED, f"{len(fitting)} item(s) fit the claim"
        elif zero := [e for e in evaluated if e.amount == 0 and _detected_fits(claim, e)]:
            claim.no_loss_details = [
                _describe(e.kind, e.reference, e.asset, e.amount) | {"inputs": e.inputs, "formula": e.formula}
                for e in zero
            ]
            outcome, reason = Claim.Status.NO_LOSS, "the event exists, but nothing is owed for it"
        else:
            claim.candidate_events = [_describe(i.kind, i.reference, i.asset, i.amount) for i in items]
            other_kinds = sorted({i.kind for i in items} - {claim.kind})
            claim.staff_note = (
                (f"nothing of kind {claim.kind} fits; the claimant has items of other kinds: {', '.join(other_kinds)}")
                if other_kinds
                else "nothing fits the claim"
            )
            outcome, reason = Claim.Status.UNMATCHED, claim.staff_note
        claim.save(update_fields=["no_loss_details", "candidate_events", "staff_note", "updated_at"])
        services.claim_transition(claim=claim, to=outcome, actor=MATCHING_ACTOR, reason=reason)
        notify(key=f"claim:{claim.id}:outcome:{outcome}", kind="outcome", user_id=claim.user_id, claim=claim)
        # Items approved by policy (or decided before) decide the claim at once.
        services.claims_follow_items(item_ids=[item.id for item in fitting], actor=MATCHING)
    return outcome
