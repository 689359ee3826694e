"""Approvals (payouts.md, "Approvals"): who approves, rejects, sets or sends back which version of
an item, and the approval limits that only two approvers change.

Every write locks the items it touches (select_for_update, in id order) before it checks the
rules, so two people acting at once are serialized: they can never give a version more
approvals than its tier asks, nor approve a version that is no longer current. The database
backs this up (ItemApproval's unique slot per version, conditional UPDATEs).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange import selectors as ledger

from ..models import (
    ApprovalLimitChange,
    Claim,
    ClaimItem,
    Incident,
    Item,
    ItemApproval,
    ItemKind,
    PayoutLine,
    PayoutLineItem,
)
from ..money import plain_decimal
from ..notifications import notify
from ..roles import APPROVER, APPROVING_ROLES, POLICY, Actor, Refused
from .audit import ITEM_STATE, audit_entry, audit_values, audit_write, item_entry
from .claims import claim_transition, claims_follow_items

LIVE = (PayoutLine.Status.EXPORTED, PayoutLine.Status.PAID)
# What approving never reads: decoding every item's inputs was a fifth of approve_items' time.
UNREAD_ON_APPROVAL = ("inputs", "flagged_values", "formula", "review_reason", "corrective_action", "incident__title")


@dataclass(frozen=True)
class Outcome:
    """What one action did to one item: changed, or why not."""

    item_id: int
    changed: bool
    message: str


def _refuse(message: str, rule: str):
    raise Refused(message, rule=rule)


def _lock(item_ids) -> dict[int, Item]:
    return {
        item.id: item
        for item in Item.objects.select_for_update()
        .select_related("incident")
        .filter(id__in=list(item_ids))
        .order_by("pk")
    }


def _in_live_lines(item_ids) -> dict[int, str]:
    """item id -> key of the live (exported or paid) payout line holding it."""
    return dict(
        PayoutLineItem.objects.filter(item_id__in=list(item_ids), is_holding=True, line__status__in=LIVE).values_list(
            "item_id", "line__key"
        )
    )


def _write(records: list, changed_item_ids: list[int], actor: Actor) -> None:
    audit_write(records)
    if changed_item_ids:
        claims_follow_items(item_ids=changed_item_ids, actor=actor)


def _reason_required(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        _refuse(f"{what} needs a reason", "reason required")
    return reason


# --- approving ---


@transaction.atomic
def items_approve(*, item_ids, actor: Actor, versions: dict[int, int] | None = None) -> list[Outcome]:
    """Give `actor`'s approval to the current version of each item (or to the version in
    `versions`, refused if it is no longer current). An item whose version reaches the approvals
    its tier asks is approved. Returns one outcome per item, in id order."""
    actor.require(APPROVING_ROLES, "approve items")
    item_ids = sorted(set(item_ids))
    items, elsewhere = _lock_with_identities(item_ids)
    given = _approvals_given(items.values())
    is_approver = APPROVER in actor.roles
    outcomes, approvals, approved, now = [], [], [], timezone.now()
    for item_id in item_ids:
        item = items.get(item_id)
        why = (
            "no such item"
            if item is None
            else _why_not_approve(
                item, actor, (versions or {}).get(item_id), given.get(item_id, []), elsewhere.get(item_id), is_approver
            )
        )
        if why:
            outcomes.append(Outcome(item_id, False, why))
            continue
        slot = len(given.get(item_id, [])) + 1
        approvals.append(
            ItemApproval(
                item=item,
                version=item.version,
                approver=actor.user,
                approver_name=actor.name,
                is_approver_role=is_approver,
                slot=slot,
                at=now,
            )
        )
        done = slot >= item.approvals_required
        if done:
            approved.append(item)
        outcomes.append(
            Outcome(item_id, True, "approved" if done else f"approval {slot} of {item.approvals_required} given")
        )
    ItemApproval.objects.bulk_create(approvals)
    _approved_save(approved, actor, now)
    _write(
        [_approval_record(a, actor, now) for a in approvals]
        + [
            audit_entry(
                actor=actor.name,
                object_type="item",
                object_id=item.id,
                action="approved",
                at=now,
                before={"status": Item.Status.COMPUTED, "version": item.version},
                after={"status": Item.Status.APPROVED, "version": item.version},
            )
            for item in approved
        ],
        [item.id for item in approved],
        actor,
    )
    return outcomes


def item_approve(*, item_id: int, actor: Actor, version: int | None = None) -> Outcome:
    return items_approve(item_ids=[item_id], actor=actor, versions=None if version is None else {item_id: version})[0]


def _lock_with_identities(item_ids: list[int]) -> tuple[dict[int, Item], dict[int, str]]:
    """Lock the items and every item of another incident with the same identity, all in one
    query in id order (so two incidents approving the same event are serialized, never
    deadlocked); return the items and, per item, the other incident that approved or paid it."""
    identities = list(Item.objects.filter(id__in=item_ids).values_list("user_id", "reference"))
    users, references = {u for u, _ in identities}, {r for _, r in identities}
    locked = list(
        Item.objects.select_for_update(of=("self",))
        .select_related("incident")
        .filter(Q(id__in=item_ids) | Q(user_id__in=users, reference__in=references))
        .defer(*UNREAD_ON_APPROVAL)
        .order_by("pk")
    )
    items = {item.id: item for item in locked if item.id in set(item_ids)}
    decided = {}
    for other in locked:
        if other.status in (Item.Status.APPROVED, Item.Status.PAID):
            decided.setdefault((other.user_id, other.kind, other.reference, other.asset), []).append(other)
    elsewhere = {}
    for item in items.values():
        for other in decided.get((item.user_id, item.kind, item.reference, item.asset), []):
            if other.incident_id != item.incident_id:
                elsewhere[item.id] = f"{other.incident.slug} ({other.status})"
    return items, elsewhere


def _approvals_given(items) -> dict[int, list[ItemApproval]]:
    """The approvals of each item's current version (older versions' are read and left out: there
    are few, and one `IN` is far cheaper than an OR of a thousand (item, version) pairs)."""
    version = {item.id: item.version for item in items}
    given: dict[int, list[ItemApproval]] = {}
    for approval in ItemApproval.objects.filter(item_id__in=list(version)).order_by("item_id", "slot"):
        if approval.version == version[approval.item_id]:
            given.setdefault(approval.item_id, []).append(approval)
    return given


def _why_not_approve(
    item: Item, actor: Actor, version: int | None, given: list[ItemApproval], elsewhere: str | None, is_approver: bool
) -> str | None:
    if item.is_decided:
        return f"already {item.status} (version {item.version}): nothing to approve"
    if version is not None and version != item.version:
        return f"version {version} is no longer current: the item is at version {item.version}"
    if item.status == Item.Status.NEEDS_REVIEW:
        return "needs review: an amount must be set first"
    if item.flagged_at:
        return f"flagged by detection ({item.flag_reason}): accept the recomputation, set an amount or reject it first"
    if actor.username == item.amount_set_by:
        return f"{actor.username} set this version's amount, so two other people approve it (four eyes)"
    if any(a.approver_id == actor.user.pk for a in given):
        return f"{actor.username} has already approved version {item.version}"
    if elsewhere:
        return f"the same event is already approved or paid in incident {elsewhere}"
    if item.approvals_required == 2 and given and not (given[0].is_approver_role or is_approver):
        return (
            f"the second approval must come from an approver: the first was by {given[0].approver_name}, "
            f"who was not one"
        )
    return None


def _approved_save(approved: list[Item], actor: Actor, now) -> None:
    if not approved:
        return
    # Conditional: only items still computed at their locked version move (the lock makes it all).
    moved = Item.objects.filter(id__in=[i.id for i in approved], status=Item.Status.COMPUTED).update(
        status=Item.Status.APPROVED, updated_at=now
    )
    assert moved == len(approved), "an item locked for approval changed under its lock"
    for item in approved:
        item.status = Item.Status.APPROVED


def _approval_record(approval: ItemApproval, actor: Actor, now):
    return audit_entry(
        actor=actor.name,
        object_type="approval",
        object_id=approval.id,
        action="given",
        at=now,
        after={
            "item": approval.item_id,
            "version": approval.version,
            "slot": approval.slot,
            "approver": approval.approver_name,
            "is_approver": approval.is_approver_role,
        },
    )


# --- rejecting ---


@transaction.atomic
def items_reject(*, item_ids, actor: Actor, reason: str, versions: dict[int, int] | None = None) -> list[Outcome]:
    """Reject undecided items, and approved ones that detection has flagged (not in a live line)."""
    actor.require(APPROVING_ROLES, "reject items")
    reason = _reason_required(reason, "a rejection")
    item_ids = sorted(set(item_ids))
    items = _lock(item_ids)
    live = _in_live_lines(item_ids)
    outcomes, records, rejected, now = [], [], [], timezone.now()
    for item_id in item_ids:
        item = items.get(item_id)
        why = (
            "no such item" if item is None else _why_not_reject(item, (versions or {}).get(item_id), live.get(item_id))
        )
        if why:
            outcomes.append(Outcome(item_id, False, why))
            continue
        before = audit_values(item, ITEM_STATE)
        if item.status == Item.Status.APPROVED:  # a flagged approval reversed: a new version
            item.version += 1
        item.status, item.updated_at = Item.Status.REJECTED, now
        rejected.append(item)
        records.append(item_entry(item, actor=actor.name, action="rejected", before=before, reason=reason, at=now))
        outcomes.append(Outcome(item_id, True, "rejected"))
    Item.objects.bulk_update(rejected, ["status", "version", "updated_at"])
    _write(records, [i.id for i in rejected], actor)
    return outcomes


def item_reject(*, item_id: int, actor: Actor, reason: str, version: int | None = None) -> Outcome:
    return items_reject(
        item_ids=[item_id], actor=actor, reason=reason, versions=None if version is None else {item_id: version}
    )[0]


def _why_not_reject(item: Item, version: int | None, live_key: str | None) -> str | None:
    if item.status == Item.Status.REJECTED:
        return f"already rejected (version {item.version})"
    if version is not None and version != item.version:
        return f"version {version} is no longer current: the item is at version {item.version}"
    if live_key:
        return f"in live payout line {live_key}: it keeps its version"
    if item.status == Item.Status.PAID:
        return "already paid"
    if item.status == Item.Status.APPROVED and not item.flagged_at:
        return "already approved: send it back (with a reason) before rejecting it"
    return None


# --- new versions: an amount set by hand, a recomputation accepted, a decision sent back ---


def _new_version_allowed(item: Item) -> None:
    live = _in_live_lines([item.id])
    if live:
        _refuse(f"item {item.id} is in live payout line {live[item.id]}: it keeps its version", "live payout line")
    if item.status == Item.Status.PAID:
        _refuse(f"item {item.id} is paid", "paid")


def _amount_parse(raw, asset: str) -> Decimal:
    """An amount set by hand: a plain decimal, greater than 0, with at most the asset's decimals."""
    decimals = ledger.asset_decimals().get(asset)
    if decimals is None:
        _refuse(f"there is no asset {asset}", "unknown asset")
    amount = plain_decimal(raw if isinstance(raw, str) else f"{raw:f}" if isinstance(raw, Decimal) else str(raw))
    if amount is None:
        _refuse(f"{raw!r} is not an amount: write a plain decimal such as 12.5", "amount format")
    if amount <= 0:
        _refuse(f"an amount set by hand must be greater than 0, not {raw}", "amount positive")
    with localcontext(prec=60):  # 20 integer digits and 18 decimals fit
        exact = amount.quantize(Decimal(1).scaleb(-decimals))
    if exact != amount:
        _refuse(f"{asset} is paid with at most {decimals} decimals; {raw} has more", "asset decimals")
    return exact


@transaction.atomic
def item_amount_set(
    *, item_id: int, actor: Actor, amount, reason: str, values: dict | None = None, action: str = "amount_set"
) -> Item:
    """Set an item's amount by hand: a new version, computed, that two other people approve."""
    actor.require(APPROVING_ROLES, "set an amount")
    reason = _reason_required(reason, "an amount set by hand")
    item = _lock([item_id]).get(item_id) or _refuse(f"there is no item {item_id}", "unknown item")
    _new_version_allowed(item)
    before = audit_values(item, ITEM_STATE)
    item.amount = _amount_parse(amount, item.asset)
    for name, value in (values or {}).items():
        setattr(item, name, value)
    item.status, item.approval, item.amount_set_by = Item.Status.COMPUTED, Item.Approval.TWO, actor.username
    item.version += 1
    item.flagged_at, item.flagged_amount, item.flag_reason, item.flagged_values = None, None, "", None
    item.save()
    _write(
        [item_entry(item, actor=actor.name, action=action, before=before, reason=reason)],
        [item.id],
        actor,
    )
    return item


def item_recomputation_accept(*, item_id: int, actor: Actor, reason: str) -> Item:
    """Take what detection now computes for a flagged item: the amount set by the person who accepts."""
    item = Item.objects.get(id=item_id)
    if not item.flagged_at:
        _refuse(f"item {item_id} is not flagged: there is no recomputation to accept", "not flagged")
    if item.flagged_amount is None:
        _refuse(
            f"detection no longer finds item {item_id} ({item.flag_reason}): reject it or set an amount",
            "nothing to accept",
        )
    values = _flagged_values(item.flagged_values or {})
    return item_amount_set(
        item_id=item_id,
        actor=actor,
        amount=item.flagged_amount,
        values=values,
        action="recomputation_accepted",
        reason=f"accepted detection's recomputation ({item.flag_reason}): {reason}",
    )


def _flagged_values(stored: dict) -> dict:
    values = {k: stored[k] for k in ("inputs", "formula", "review_reason", "corrective_action") if k in stored}
    if stored.get("usdc_value") is not None:
        values["usdc_value"] = Decimal(stored["usdc_value"])
    if stored.get("event_at"):
        values["event_at"] = datetime.fromisoformat(stored["event_at"])
    return values


@transaction.atomic
def item_send_back(*, item_id: int, actor: Actor, reason: str) -> Item:
    """Send a decided item back to undecided (a rejected one is reopened): a new version, which
    needs its tier's approvals again; a policy-tier item is approved by policy again, unless
    detection has flagged it."""
    actor.require(APPROVING_ROLES, "send items back")
    reason = _reason_required(reason, "sending an item back")
    item = _lock([item_id]).get(item_id) or _refuse(f"there is no item {item_id}", "unknown item")
    if item.status not in (Item.Status.APPROVED, Item.Status.REJECTED):
        _refuse(f"item {item_id} is {item.status}: only a decided item is sent back", "not decided")
    _new_version_allowed(item)
    before = audit_values(item, ITEM_STATE)
    action = "reopened" if item.status == Item.Status.REJECTED else "sent_back"
    item.version += 1
    item.status = Item.Status.NEEDS_REVIEW if item.amount is None else Item.Status.COMPUTED
    records = [item_entry(item, actor=actor.name, action=action, before=before, reason=reason)]
    if item.approval == Item.Approval.POLICY and item.status == Item.Status.COMPUTED and not item.flagged_at:
        records.append(
            audit_entry(
                actor=POLICY.name,
                object_type="item",
                object_id=item.id,
                action="approved",
                before={"status": item.status, "version": item.version},
                after={"status": Item.Status.APPROVED, "version": item.version},
                reason=f"USDC value {item.usdc_value} within the auto-approval limit",
            )
        )
        item.status = Item.Status.APPROVED
    item.save()
    _write(records, [item.id], actor)
    return item


# --- an amount for a claim nothing was detected for ---


@transaction.atomic
def item_for_claim_create(*, claim_id: int, actor: Actor, asset: str, amount, reason: str) -> Item:
    """Staff set an amount owed for a claim (kind `other`): an item of its own, two approvals."""
    actor.require(APPROVING_ROLES, "set an amount")
    reason = _reason_required(reason, "an amount set by hand")
    claim = Claim.objects.select_for_update().select_related("incident").filter(id=claim_id).first()
    if claim is None:
        _refuse(f"there is no claim {claim_id}", "unknown claim")
    if claim.status in (Claim.Status.UNVERIFIED, Claim.Status.RECEIVED, Claim.Status.MERGED):
        _refuse(f"claim {claim_id} is {claim.status}: an amount is set once it has been matched", "claim not matched")
    value = _amount_parse(amount, asset)
    reference = f"claim:{claim.public_id}"
    if Item.objects.filter(
        incident=claim.incident, user_id=claim.user_id, kind=ItemKind.OTHER, reference=reference, asset=asset
    ).exists():
        _refuse(f"claim {claim_id} already has an amount in {asset}: set that item's amount instead", "one per asset")
    item = Item.objects.create(
        incident=claim.incident,
        user_id=claim.user_id,
        kind=ItemKind.OTHER,
        reference=reference,
        asset=asset,
        amount=value,
        status=Item.Status.COMPUTED,
        approval=Item.Approval.TWO,
        amount_set_by=actor.username,
        formula="set by staff",
        inputs={"claim": str(claim.public_id), "reason": reason},
    )
    ClaimItem.objects.create(claim=claim, item=item)
    _write(
        [
            audit_entry(
                actor=actor.name,
                object_type="item",
                object_id=item.id,
                action="created",
                after=audit_values(item, (*ITEM_STATE, "kind", "reference", "asset", "user_id")),
                reason=reason,
            )
        ],
        [item.id],
        actor,
    )
    return item


# --- approval limits: proposed by one, confirmed by a second approver ---


@transaction.atomic
def incident_limits_confirm(*, change_id: int, actor: Actor):
    """Apply proposed approval limits, once a second approver confirms them. Existing undecided
    items are never turned into policy approvals by it (engine.py keeps their tier)."""
    from .engine import incident_settings_save  # engine imports this module's callers

    actor.require({APPROVER}, "confirm approval limits")
    change = ApprovalLimitChange.objects.select_for_update().filter(id=change_id).first()
    if change is None or change.status != ApprovalLimitChange.Status.PENDING:
        _refuse(f"there is no pending limit change {change_id}", "not pending")
    if change.proposed_by in (actor.username, actor.name):
        _refuse(f"{actor.username} proposed this change: a second approver confirms it", "four eyes")
    incident = Incident.objects.select_for_update().get(id=change.incident_id)
    before = incident.settings_dict()
    incident.auto_approve_limit, incident.dual_approval_limit = change.auto_approve_limit, change.dual_approval_limit
    incident.full_clean()
    change.status, change.decided_by, change.decided_at = (
        ApprovalLimitChange.Status.CONFIRMED,
        actor.name,
        timezone.now(),
    )
    change.save()
    return incident_settings_save(
        incident=incident,
        before=before,
        changed_by=actor.name,
        limits_confirmed=True,
        reason=f"limits proposed by {change.proposed_by}, confirmed by {actor.username}",
    )


# --- decisions on a whole claim: they act on its items ---


def _claim_item_ids(claim_id: int) -> list[int]:
    if not Claim.objects.filter(id=claim_id).exists():
        _refuse(f"there is no claim {claim_id}", "unknown claim")
    return list(ClaimItem.objects.filter(claim_id=claim_id).order_by("item_id").values_list("item_id", flat=True))


def claim_approve(*, claim_id: int, actor: Actor) -> list[Outcome]:
    """Approve each undecided item of the claim (the claim follows them)."""
    actor.require(APPROVING_ROLES, "approve claims")
    item_ids = _claim_item_ids(claim_id)
    if not item_ids:
        _refuse(f"claim {claim_id} has no item to approve: set an amount for it first", "nothing to approve")
    return items_approve(item_ids=item_ids, actor=actor)


@transaction.atomic
def claim_reject(*, claim_id: int, actor: Actor, reason: str) -> list[Outcome]:
    """Reject the claim's undecided items; a claim with no item is rejected itself."""
    actor.require(APPROVING_ROLES, "reject claims")
    reason = _reason_required(reason, "a rejection")
    item_ids = _claim_item_ids(claim_id)
    if item_ids:
        return items_reject(item_ids=item_ids, actor=actor, reason=reason)
    claim = Claim.objects.select_for_update().get(id=claim_id)
    if claim.status not in (Claim.Status.MATCHED, Claim.Status.UNMATCHED, Claim.Status.NO_LOSS, Claim.Status.IN_REVIEW):
        return [Outcome(0, False, f"claim {claim_id} is {claim.status}: nothing to reject")]
    claim_transition(claim=claim, to=Claim.Status.REJECTED, actor=actor.name, reason=reason)
    notify(
        key=f"claim:{claim.id}:decision:rejected",
        kind="decision",
        user_id=claim.user_id,
        claim=claim,
        context={"decision": "rejected"},
    )
    return [Outcome(0, True, "rejected")]


@transaction.atomic
def claim_take_into_review(*, claim_id: int, actor: Actor) -> Outcome:
    actor.require(APPROVING_ROLES, "take claims into review")
    claim = Claim.objects.select_for_update().filter(id=claim_id).first()
    if claim is None:
        _refuse(f"there is no claim {claim_id}", "unknown claim")
    if claim.status not in (Claim.Status.MATCHED, Claim.Status.UNMATCHED, Claim.Status.NO_LOSS):
        return Outcome(0, False, f"claim {claim_id} is {claim.get_status_display()}: nothing to take into review")
    claim_transition(claim=claim, to=Claim.Status.IN_REVIEW, actor=actor.name, reason="taken into review")
    return Outcome(0, True, "taken into review")
