"""Writes of the compensation engine: incidents, detection runs and the items they produce."""

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from exchange import selectors as ledger

from .. import detectors as d
from .. import queue
from ..models import (
    DETECTION_SETTINGS,
    LIMIT_SETTINGS,
    SETTING_FIELDS,
    ApprovalLimitChange,
    ClaimItem,
    DetectionChunk,
    DetectionRun,
    Finding,
    Incident,
    Item,
    ItemApproval,
    ItemKind,
    PayoutLineItem,
)
from ..money import amount_from
from ..roles import DETECTION, POLICY
from .audit import ITEM_STATE, audit_entry, audit_record, audit_value, audit_values, audit_write

logger = logging.getLogger(__name__)
DEFAULT_CHUNK_SIZE = 1000
POLICY_ACTOR = POLICY.name
DETECTION_ACTOR = DETECTION.name


# --- incidents ---


class IncidentFileError(ValueError):
    pass


INSTANT_SETTINGS = ("window_start", "trading_resumed", "window_end", "evaluation_end", "claims_close")
INT_SETTINGS = ("price_max_age", "bad_fill_tolerance_bps")
DECIMAL_SETTINGS = ("auto_approve_limit", "dual_approval_limit")


def incident_settings_parse(data: dict, *, source: str) -> dict:
    """The settings of an incident.json (keys exactly as in the policy's table), typed."""
    if not isinstance(data, dict):
        raise IncidentFileError(f"{source}: expected a JSON object")
    missing = [key for key in ("slug", *SETTING_FIELDS) if key not in data]
    unknown = sorted(set(data) - {"slug", *SETTING_FIELDS})
    if missing or unknown:
        raise IncidentFileError(f"{source}: missing keys {missing}" if missing else f"{source}: unknown keys {unknown}")
    parsed = {"slug": str(data["slug"]), "title": str(data["title"]), "price_reference": str(data["price_reference"])}
    for key in INSTANT_SETTINGS:
        try:
            instant = datetime.fromisoformat(str(data[key]))
        except ValueError as exc:
            raise IncidentFileError(f"{source}: key '{key}': {data[key]!r} is not an ISO-8601 timestamp") from exc
        parsed[key] = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
    for key in INT_SETTINGS:
        if type(data[key]) is not int or data[key] < 0:
            raise IncidentFileError(f"{source}: key '{key}': expected a non-negative integer, got {data[key]!r}")
        parsed[key] = data[key]
    for key in DECIMAL_SETTINGS:
        parsed[key] = amount_from(data[key])
        if parsed[key] is None:
            raise IncidentFileError(
                f"{source}: key '{key}': expected a plain decimal such as \"100\", got {data[key]!r}"
            )
    if parsed["price_reference"] not in Incident.PriceReference.values:
        raise IncidentFileError(f"{source}: key 'price_reference': expected 'index' or 'mark'")
    return parsed


@dataclass
class SettingsSaved:
    changed: list[str]
    redetection: DetectionRun | None = None
    limits_proposed: ApprovalLimitChange | None = None


@dataclass
class IncidentLoaded:
    incident: Incident
    created: bool
    changed: list[str]
    redetection: DetectionRun | None
    limits_proposed: ApprovalLimitChange | None = None


@transaction.atomic
def incident_load(*, path: str | Path, changed_by: str) -> IncidentLoaded:
    """Create the incident of an incident.json, or update it (same slug) and log what changed."""
    try:
        data = json.loads(Path(path).read_text(), parse_float=Decimal)
    except (OSError, json.JSONDecodeError) as exc:
        raise IncidentFileError(f"{path}: {exc}") from exc
    values = incident_settings_parse(data, source=str(path))
    incident = Incident.objects.select_for_update().filter(slug=values["slug"]).first()
    if incident is None:
        incident = Incident(**values)
        incident.full_clean()
        incident.save()
        audit_record(
            actor=changed_by,
            object_type="incident",
            object_id=incident.id,
            action="created",
            after=incident.settings_dict(),
            reason=f"loaded from {Path(path).name}",
        )
        return IncidentLoaded(incident, True, [], None)
    before = incident.settings_dict()
    for key, value in values.items():
        setattr(incident, key, value)
    incident.full_clean()
    saved = incident_settings_save(incident=incident, before=before, changed_by=changed_by)
    return IncidentLoaded(incident, False, saved.changed, saved.redetection, saved.limits_proposed)


@transaction.atomic
def incident_settings_save(
    *, incident: Incident, before: dict, changed_by: str, limits_confirmed: bool = False, reason: str = ""
) -> SettingsSaved:
    """Save edited settings, record the change and, if the incident has items, detect again.

    New approval limits are not saved but proposed: they apply once a second approver confirms
    them (approvals.incident_limits_confirm, which passes `limits_confirmed`)."""
    proposed = None
    if not limits_confirmed and any(before.get(k) != incident.settings_dict()[k] for k in LIMIT_SETTINGS):
        proposed = _limits_propose(incident, before, changed_by)
    after = incident.settings_dict()
    changed = [key for key in SETTING_FIELDS if before.get(key) != after[key]]
    if not changed:
        return SettingsSaved([], None, proposed)
    affects_detection = any(key in DETECTION_SETTINGS for key in changed)
    if affects_detection:
        incident.settings_version = F("settings_version") + 1
    incident.save()
    incident.refresh_from_db()
    run = None
    if affects_detection and incident.items.exists():
        run = detection_start(
            incident=incident, user_ids=None, requested_by=changed_by, reason=f"settings changed: {', '.join(changed)}"
        )
    audit_record(
        actor=changed_by,
        object_type="incident",
        object_id=incident.id,
        action="settings_changed",
        before={k: before.get(k) for k in changed},
        after={k: after[k] for k in changed},
        reason="; ".join(filter(None, [reason, f"detection #{run.pk} started" if run else ""])),
    )
    return SettingsSaved(changed, run, proposed)


def _limits_propose(incident: Incident, before: dict, proposed_by: str) -> ApprovalLimitChange:
    """Record the new limits as a proposal (superseding an earlier one) and keep the current ones."""
    pending = ApprovalLimitChange.objects.select_for_update().filter(
        incident=incident, status=ApprovalLimitChange.Status.PENDING
    )
    for earlier in pending:
        earlier.status, earlier.decided_by, earlier.decided_at = (
            ApprovalLimitChange.Status.SUPERSEDED,
            proposed_by,
            timezone.now(),
        )
        earlier.save()
    change = ApprovalLimitChange.objects.create(
        incident=incident,
        auto_approve_limit=incident.auto_approve_limit,
        dual_approval_limit=incident.dual_approval_limit,
        proposed_by=proposed_by,
    )
    audit_record(
        actor=proposed_by,
        object_type="incident",
        object_id=incident.id,
        action="limits_proposed",
        before={k: before[k] for k in LIMIT_SETTINGS},
        after={k: audit_value(getattr(change, k)) for k in LIMIT_SETTINGS},
        reason=f"limit change #{change.id} waits for a second approver's confirmation",
    )
    for key in LIMIT_SETTINGS:
        setattr(incident, key, Decimal(before[key]))
    return change


# --- detection runs ---


@transaction.atomic
def detection_start(
    *,
    incident: Incident,
    user_ids: Iterable[int] | None,
    requested_by: str,
    reason: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> DetectionRun:
    """Split the users into chunks and enqueue one task per chunk, once this transaction commits."""
    ids = sorted(set(user_ids)) if user_ids is not None else ledger.account_ids()
    run = DetectionRun.objects.create(
        incident=incident,
        requested_by=requested_by,
        reason=reason,
        settings_version=incident.settings_version,
        total_users=len(ids),
    )
    chunks = DetectionChunk.objects.bulk_create(
        DetectionChunk(run=run, number=n, user_ids=ids[start : start + chunk_size])
        for n, start in enumerate(range(0, len(ids), chunk_size))
    )
    if not chunks:
        DetectionRun.objects.filter(id=run.id).update(status=DetectionRun.Status.DONE, finished_at=timezone.now())
        run.refresh_from_db()
        return run
    chunk_ids = [chunk.id for chunk in chunks]
    transaction.on_commit(lambda: _enqueue_chunks(chunk_ids))
    return run


def _enqueue_chunks(chunk_ids: list[int]) -> None:
    queue.enqueue_group(queue.DETECTION_CHUNK_RUN, "chunk_id", chunk_ids)


def detection_chunks_requeue(*, older_than: timedelta) -> list[int]:
    """Enqueue again the chunks still pending of runs that have not progressed for `older_than`:
    their task was lost (e.g. a worker killed between taking it from Redis and recording it as
    unacknowledged). Harmless for a chunk that is only late: a done chunk is not done twice."""
    # A run whose workers are busy progresses every few seconds: its pending chunks are queued, not
    # lost. One that has not moved for `older_than` lost the tasks of the chunks still pending.
    stalled = Q(run__progressed_at__lt=timezone.now() - older_than) | Q(
        run__progressed_at__isnull=True, run__started_at__lt=timezone.now() - older_than
    )
    chunk_ids = list(
        DetectionChunk.objects.filter(
            stalled, status=DetectionChunk.Status.PENDING, run__status=DetectionRun.Status.RUNNING
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    if chunk_ids:
        _enqueue_chunks(chunk_ids)
    return chunk_ids


def detection_chunk_run(*, chunk_id: int) -> bool:
    """Detect for one chunk's users and store the result; False if the chunk was already done.

    Everything (items, findings, the chunk's completion and the run's progress) commits
    together, so a worker that dies mid-chunk leaves no trace and the redelivered task
    redoes it; a repeated delivery of a finished chunk finds it done and does nothing.
    """
    with transaction.atomic():
        # Only the chunk's row: locking the joined run and incident too would make every chunk wait
        # for the one before it to commit, and detection would use one process however many ran.
        chunk = DetectionChunk.objects.select_for_update(of=("self",)).select_related("run__incident").get(id=chunk_id)
        if chunk.status == DetectionChunk.Status.DONE:
            return False
        run = chunk.run
        items_detect_and_save(incident=run.incident, user_ids=chunk.user_ids, run=run)
        if settings.DETECTION_CHUNK_DELAY:
            time.sleep(settings.DETECTION_CHUNK_DELAY)  # failure drills: a window to kill a worker mid-chunk
        chunk.status, chunk.done_at, chunk.attempts = DetectionChunk.Status.DONE, timezone.now(), chunk.attempts + 1
        chunk.save(update_fields=["status", "done_at", "attempts"])
        # The run row's lock orders the chunks' increments, so exactly one sees the last.
        run = DetectionRun.objects.select_for_update().get(id=run.id)
        run.done_users += len(chunk.user_ids)
        run.progressed_at = timezone.now()
        if run.done_users >= run.total_users:
            run.status, run.finished_at = DetectionRun.Status.DONE, timezone.now()
        run.save(update_fields=["done_users", "progressed_at", "status", "finished_at"])
    return True


# --- detection itself ---

_context_cache: dict[tuple, d.Context] = {}


def detection_context(incident: Incident) -> d.Context:
    """Settings, markets and prices for detection, kept per process until settings or data change."""
    # Ids alone could repeat after a database is emptied (SQLite reuses them); times do not.
    key = (incident.id, incident.settings_version, incident.updated_at, ledger.latest_import_marker())
    if key not in _context_cache:
        _context_cache.clear()
        policy = d.Policy(
            incident.window_start,
            incident.trading_resumed,
            incident.window_end,
            incident.evaluation_end,
            incident.price_reference,
            incident.price_max_age,
            incident.bad_fill_tolerance_bps,
        )
        # Most lookups fall between a day before the window (withdrawals) and the evaluation
        # horizon; those are answered from memory, the rare others by one indexed query each.
        start = incident.window_start - timedelta(hours=24, seconds=incident.price_max_age)
        end = max(incident.evaluation_end, incident.window_end)
        prices = d.Prices(
            ledger.mark_prices_between(start, end),
            reference=incident.price_reference,
            max_age=incident.price_max_age,
            loaded_from=start,
            loaded_until=end,
            fetch_before=ledger.mark_price_latest,
        )
        markets = {
            m.symbol: d.Market(m.symbol, m.base_symbol, m.quote_symbol, m.market_type) for m in ledger.markets_list()
        }
        _context_cache[key] = d.Context(policy, prices, markets, ledger.asset_decimals())
    return _context_cache[key]


def detect_users(incident: Incident, user_ids: list[int]) -> dict[int, tuple[list[d.Detected], list]]:
    """Run every detector over each user, reading the ledger with one query per kind."""
    ctx = detection_context(incident)
    rows = ledger.ledger_rows_for_users(user_ids)
    results = {}
    for user_id in user_ids:
        user_ledger = d.UserLedger(user_id, **{kind: by_user.get(user_id, []) for kind, by_user in rows.items()})
        results[user_id] = d.detect_all(user_ledger, ctx)
    return results


def item_approval(detected: d.Detected, incident: Incident, prices: d.Prices) -> tuple[str, str, Decimal | None]:
    """The policy's approval tier: (status, approval, USDC value rounded to cents)."""
    if detected.amount is None:
        return Item.Status.NEEDS_REVIEW, Item.Approval.TWO, None
    value = prices.usdc_value(detected.asset, detected.event_at)
    if value is None:
        return Item.Status.COMPUTED, Item.Approval.TWO, None  # unknown value: above every limit
    with localcontext(prec=d.PRECISION):  # the exact product, rounded once (the default 28 digits would round twice)
        usdc = d.quantize(detected.amount * value.value, 2)
    if usdc <= incident.auto_approve_limit:
        return Item.Status.APPROVED, Item.Approval.POLICY, usdc
    if usdc <= incident.dual_approval_limit:
        return Item.Status.COMPUTED, Item.Approval.ONE, usdc
    return Item.Status.COMPUTED, Item.Approval.TWO, usdc


ITEM_RESULT_FIELDS = (
    "amount",
    "status",
    "approval",
    "review_reason",
    "formula",
    "inputs",
    "event_at",
    "usdc_value",
    "corrective_action",
)
# A change of these makes a new version: approvals given to the old one were for other numbers.
VERSIONED_FIELDS = ("amount", "status", "approval")


def _item_values(detected: d.Detected, incident: Incident, prices: d.Prices) -> dict:
    status, approval, usdc = item_approval(detected, incident, prices)
    return {
        "amount": detected.amount,
        "status": status,
        "approval": approval,
        "review_reason": detected.review_reason,
        "formula": detected.formula,
        "inputs": json.loads(json.dumps(detected.inputs, default=str)),
        "event_at": detected.event_at,
        "usdc_value": usdc,
        "corrective_action": detected.corrective_action,
    }


def items_detect_and_save(*, incident: Incident, user_ids: list[int], run: DetectionRun | None) -> dict:
    """Detect for these users and bring their stored items and findings in line, in one transaction.

    Returns what detection evaluated, per user (owed or not), for callers that need the events."""
    results = detect_users(incident, user_ids)
    prices = detection_context(incident).prices
    with transaction.atomic():
        # Locking the users' items orders detection after any approval in flight (and vice versa).
        existing = {
            (i.user_id, i.kind, i.reference, i.asset): i
            for i in Item.objects.select_for_update()
            .filter(incident=incident, user_id__in=user_ids)
            .exclude(kind=ItemKind.OTHER)
            .order_by("pk")
        }
        plan = _ItemPlan(incident, run)
        for user_id, (detected, _) in results.items():
            for event in detected:
                if event.is_owed:
                    plan.apply(user_id, event, _item_values(event, incident, prices), existing)
        plan.vanished([item for key, item in existing.items() if key not in plan.seen])
        plan.save()
        _findings_save(incident, user_ids, results, run)
    return results


class _ItemPlan:
    """The inserts, updates, flags and deletions that one chunk's detection asks for, and their
    records in the audit trail."""

    def __init__(self, incident: Incident, run: DetectionRun | None):
        self.incident, self.run = incident, run
        self.seen: set[tuple] = set()
        self.new: list[Item] = []
        self.changed: list[Item] = []
        self.deleted: list[Item] = []
        self.records = []
        self.now = timezone.now()

    def apply(self, user_id: int, event: d.Detected, values: dict, existing: dict) -> None:
        key = (user_id, event.kind, event.reference, event.asset)
        self.seen.add(key)
        item = existing.get(key)
        if item is None:
            self.new.append(
                Item(
                    incident=self.incident,
                    user_id=user_id,
                    kind=event.kind,
                    reference=event.reference,
                    asset=event.asset,
                    detection_run=self.run,
                    **values,
                )
            )
        elif item.is_decided or item.amount_set_by:  # a person's decision stands; a difference waits for them
            # A hand-set amount often answers "no price": detection still having none is no difference.
            unpriced_again = item.amount_set_by and values["status"] == Item.Status.NEEDS_REVIEW
            differs = values["amount"] != item.amount or values["status"] == Item.Status.NEEDS_REVIEW
            if differs and not unpriced_again:
                self._flag(
                    item,
                    values,
                    "detection now gives a different result"
                    + (f": {values['review_reason']}" if values["review_reason"] else ""),
                )
            elif item.flagged_at:
                self._unflag(item)
        else:
            self._update(item, _tier_kept(values))

    def _update(self, item: Item, values: dict) -> None:
        if not item.flagged_at and all(getattr(item, f) == values[f] for f in ITEM_RESULT_FIELDS):
            return
        before, was_flagged = audit_values(item, ITEM_STATE), bool(item.flagged_at)
        new_version = any(getattr(item, f) != values[f] for f in VERSIONED_FIELDS)
        for field_name, value in values.items():
            setattr(item, field_name, value)
        item.version += 1 if new_version else 0
        item.flagged_at, item.flagged_amount, item.flag_reason, item.flagged_values = None, None, "", None
        item.detection_run = self.run
        self.changed.append(item)
        if new_version:
            self._record(item, "updated", before, _status_note(item))
        elif was_flagged:
            self._record(item, "unflagged", None, "detected again", after=None)

    def vanished(self, items: list[Item]) -> None:
        """Items detection no longer finds: an undecided one nobody has touched goes (its records
        stay in the trail); one that a person decided, approved, set or linked to a claim stays,
        flagged for staff."""
        undecided = [i.pk for i in items if not (i.is_decided or i.amount_set_by)]
        touched = (
            set(ClaimItem.objects.filter(item_id__in=undecided).values_list("item_id", flat=True))
            | set(ItemApproval.objects.filter(item_id__in=undecided).values_list("item_id", flat=True))
            | set(PayoutLineItem.objects.filter(item_id__in=undecided).values_list("item_id", flat=True))
        )
        for item in items:
            if item.pk in undecided and item.pk not in touched:
                self.deleted.append(item)
                self._record(item, "removed", audit_values(item, ITEM_STATE), "no longer detected", after=None)
                logger.info("item %s of incident %s is no longer detected; removed", item, self.incident.slug)
            else:
                self._flag(item, None, "no longer detected")

    def _flag(self, item: Item, values: dict | None, reason: str) -> None:
        new_amount = values["amount"] if values else None
        if item.flagged_at and item.flagged_amount == new_amount and item.flag_reason == reason:
            return  # already flagged with these numbers: a repeated detection adds nothing
        item.flagged_at, item.flagged_amount, item.flag_reason = self.now, new_amount, reason
        item.flagged_values = (
            None
            if values is None
            else audit_value(
                {
                    k: values[k]
                    for k in ("inputs", "formula", "review_reason", "corrective_action", "usdc_value", "event_at")
                }
            )
        )
        self.changed.append(item)
        self._record(
            item,
            "flagged",
            {"amount": audit_value(item.amount)},
            reason,
            after={"flagged_amount": audit_value(new_amount)},
        )

    def _unflag(self, item: Item) -> None:
        item.flagged_at, item.flagged_amount, item.flag_reason, item.flagged_values = None, None, "", None
        self.changed.append(item)
        self._record(item, "unflagged", None, "detection agrees with the decided amount again", after=None)

    def _record(self, item: Item, action: str, before, reason: str, *, after="state", actor=DETECTION_ACTOR):
        self.records.append(
            (
                item,
                audit_entry(
                    actor=actor,
                    object_type="item",
                    object_id=item.pk or 0,
                    action=action,
                    before=before,
                    reason=reason,
                    after=audit_values(item, ITEM_STATE) if after == "state" else after,
                    at=self.now,
                ),
            )
        )

    def save(self) -> None:
        if self.deleted:
            Item.objects.filter(pk__in=[i.pk for i in self.deleted]).delete()
        for item in Item.objects.bulk_create(self.new):
            self._record(item, "detected", None, _status_note(item))
            if item.status == Item.Status.APPROVED:
                self._record(
                    item,
                    "approved",
                    {"status": Item.Status.COMPUTED, "version": item.version},
                    _status_note(item),
                    after={"status": item.status, "version": item.version},
                    actor=POLICY_ACTOR,
                )
        for item in self.changed:
            item.updated_at = self.now
        if self.changed:
            Item.objects.bulk_update(
                self.changed,
                [
                    *ITEM_RESULT_FIELDS,
                    "version",
                    "detection_run",
                    "flagged_at",
                    "flagged_amount",
                    "flag_reason",
                    "flagged_values",
                    "updated_at",
                ],
            )
        for item, record in self.records:
            record.object_id = item.pk
        audit_write([record for _, record in self.records])


def _tier_kept(values: dict) -> dict:
    """Detection never turns an existing undecided item into a policy approval by itself (a raised
    auto-approval limit, or a lower recomputed value): it needs one person's approval instead."""
    if values["approval"] != Item.Approval.POLICY:
        return values
    return {**values, "status": Item.Status.COMPUTED, "approval": Item.Approval.ONE}


def _status_note(item: Item) -> str:
    if item.status == Item.Status.APPROVED and item.approval == Item.Approval.POLICY:
        return f"approved by policy (USDC value {item.usdc_value})"
    if item.status == Item.Status.NEEDS_REVIEW:
        return f"needs review: {item.review_reason}"
    return f"awaiting {item.get_approval_display()}"


def _findings_save(incident: Incident, user_ids: list[int], results: dict, run: DetectionRun | None) -> None:
    Finding.objects.filter(incident=incident, user_id__in=user_ids).delete()
    Finding.objects.bulk_create(
        Finding(
            incident=incident,
            user_id=user_id,
            kind=f.kind,
            reference=f.reference,
            asset=f.asset,
            quantity=f.quantity,
            description=f.description,
            inputs=json.loads(json.dumps(f.inputs, default=str)),
            detection_run=run,
        )
        for user_id, (_, findings) in results.items()
        for f in findings
    )
