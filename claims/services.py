"""Writes that matter: incidents, detection runs and the items they produce."""

import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from celery import group
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange import selectors as ledger

from . import detectors as d
from .models import (
    DETECTION_SETTINGS,
    SETTING_FIELDS,
    Claim,
    ClaimAttachment,
    ClaimItem,
    ClaimTransition,
    ClaimVerification,
    DetectionChunk,
    DetectionRun,
    Finding,
    Incident,
    IncidentSettingsChange,
    Item,
    ItemEvent,
    Notification,
)
from .notifications import absolute, language_for, notify

logger = logging.getLogger(__name__)
DEFAULT_CHUNK_SIZE = 1000
POLICY_ACTOR = "policy"
DETECTION_ACTOR = "detection"


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
    parsed = {"slug": str(data["slug"]), "title": str(data["title"]),
              "price_reference": str(data["price_reference"])}
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
        try:
            parsed[key] = Decimal(str(data[key])) if isinstance(data[key], str | int | Decimal) else None
        except InvalidOperation:
            parsed[key] = None
        if parsed[key] is None or not parsed[key].is_finite():
            raise IncidentFileError(f"{source}: key '{key}': expected a decimal string such as \"100\"")
    if parsed["price_reference"] not in Incident.PriceReference.values:
        raise IncidentFileError(f"{source}: key 'price_reference': expected 'index' or 'mark'")
    return parsed


@dataclass
class IncidentLoaded:
    incident: Incident
    created: bool
    changed: list[str]
    redetection: DetectionRun | None


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
        return IncidentLoaded(incident, True, [], None)
    before = incident.settings_dict()
    for key, value in values.items():
        setattr(incident, key, value)
    incident.full_clean()
    changed, run = incident_settings_save(incident=incident, before=before, changed_by=changed_by)
    return IncidentLoaded(incident, False, changed, run)


@transaction.atomic
def incident_settings_save(
    *, incident: Incident, before: dict, changed_by: str
) -> tuple[list[str], DetectionRun | None]:
    """Save edited settings; log the change and, if the incident has items, detect again."""
    after = incident.settings_dict()
    changed = [key for key in SETTING_FIELDS if before.get(key) != after[key]]
    if not changed:
        return [], None
    affects_detection = any(key in DETECTION_SETTINGS for key in changed)
    if affects_detection:
        incident.settings_version = F("settings_version") + 1
    incident.save()
    incident.refresh_from_db()
    change = IncidentSettingsChange.objects.create(
        incident=incident, changed_by=changed_by,
        before={k: before.get(k) for k in changed}, after={k: after[k] for k in changed},
    )
    run = None
    if affects_detection and incident.items.exists():
        run = detection_start(incident=incident, user_ids=None, requested_by=changed_by,
                              reason=f"settings changed: {', '.join(changed)}")
        change.redetection = run
        change.save(update_fields=["redetection"])
    return changed, run


# --- detection runs ---


@transaction.atomic
def detection_start(*, incident: Incident, user_ids: Iterable[int] | None, requested_by: str, reason: str = "",
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> DetectionRun:
    """Split the users into chunks and enqueue one task per chunk, once this transaction commits."""
    from .tasks import detection_chunk_run_task  # tasks import this module

    ids = sorted(set(user_ids)) if user_ids is not None else ledger.account_ids()
    run = DetectionRun.objects.create(incident=incident, requested_by=requested_by, reason=reason,
                                      settings_version=incident.settings_version, total_users=len(ids))
    chunks = DetectionChunk.objects.bulk_create(
        DetectionChunk(run=run, number=n, user_ids=ids[start:start + chunk_size])
        for n, start in enumerate(range(0, len(ids), chunk_size))
    )
    if not chunks:
        DetectionRun.objects.filter(id=run.id).update(status=DetectionRun.Status.DONE, finished_at=timezone.now())
        run.refresh_from_db()
        return run
    chunk_ids = [chunk.id for chunk in chunks]
    transaction.on_commit(lambda: _enqueue_chunks(detection_chunk_run_task, chunk_ids))
    return run


def _enqueue_chunks(task, chunk_ids: list[int]) -> None:
    group(task.si(chunk_id=chunk_id) for chunk_id in chunk_ids).apply_async()


def detection_chunk_run(*, chunk_id: int) -> bool:
    """Detect for one chunk's users and store the result; False if the chunk was already done.

    Everything (items, findings, the chunk's completion and the run's progress) commits
    together, so a worker that dies mid-chunk leaves no trace and the redelivered task
    redoes it; a repeated delivery of a finished chunk finds it done and does nothing.
    """
    with transaction.atomic():
        chunk = DetectionChunk.objects.select_for_update().select_related("run__incident").get(id=chunk_id)
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
        if run.done_users >= run.total_users:
            run.status, run.finished_at = DetectionRun.Status.DONE, timezone.now()
        run.save(update_fields=["done_users", "status", "finished_at"])
    return True


# --- detection itself ---

_context_cache: dict[tuple, d.Context] = {}


def detection_context(incident: Incident) -> d.Context:
    """Settings, markets and prices for detection, kept per process until settings or data change."""
    # Ids alone could repeat after a database is emptied (SQLite reuses them); times do not.
    key = (incident.id, incident.settings_version, incident.updated_at, ledger.latest_import_marker())
    if key not in _context_cache:
        _context_cache.clear()
        policy = d.Policy(incident.window_start, incident.trading_resumed, incident.window_end,
                          incident.evaluation_end, incident.price_reference, incident.price_max_age,
                          incident.bad_fill_tolerance_bps)
        # Most lookups fall between a day before the window (withdrawals) and the evaluation
        # horizon; those are answered from memory, the rare others by one indexed query each.
        start = incident.window_start - timedelta(hours=24, seconds=incident.price_max_age)
        end = max(incident.evaluation_end, incident.window_end)
        prices = d.Prices(ledger.mark_prices_between(start, end), reference=incident.price_reference,
                          max_age=incident.price_max_age, loaded_from=start, loaded_until=end,
                          fetch_before=ledger.mark_price_latest)
        markets = {m.symbol: d.Market(m.symbol, m.base_symbol, m.quote_symbol, m.market_type)
                   for m in ledger.markets_list()}
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
    """The policy's approval tier: (status, approval, USDC value in cents)."""
    if detected.amount is None:
        return Item.Status.NEEDS_REVIEW, Item.Approval.TWO, None
    value = prices.usdc_value(detected.asset, detected.event_at)
    if value is None:
        return Item.Status.COMPUTED, Item.Approval.TWO, None  # unknown value: above every limit
    usdc = d.quantize(detected.amount * value.value, 2)
    if usdc <= incident.auto_approve_limit:
        return Item.Status.APPROVED, Item.Approval.POLICY, usdc
    if usdc <= incident.dual_approval_limit:
        return Item.Status.COMPUTED, Item.Approval.ONE, usdc
    return Item.Status.COMPUTED, Item.Approval.TWO, usdc


ITEM_RESULT_FIELDS = ("amount", "status", "approval", "review_reason", "formula", "inputs", "event_at",
                      "usdc_value", "corrective_action")


def _item_values(detected: d.Detected, incident: Incident, prices: d.Prices) -> dict:
    status, approval, usdc = item_approval(detected, incident, prices)
    return {"amount": detected.amount, "status": status, "approval": approval,
            "review_reason": detected.review_reason, "formula": detected.formula,
            "inputs": json.loads(json.dumps(detected.inputs, default=str)), "event_at": detected.event_at,
            "usdc_value": usdc, "corrective_action": detected.corrective_action}


def items_detect_and_save(*, incident: Incident, user_ids: list[int], run: DetectionRun | None) -> dict:
    """Detect for these users and bring their stored items and findings in line, in one transaction.

    Returns what detection evaluated, per user (owed or not), for callers that need the events."""
    results = detect_users(incident, user_ids)
    prices = detection_context(incident).prices
    with transaction.atomic():
        # Locking the users' items orders detection after any approval in flight (and vice versa).
        existing = {(i.user_id, i.kind, i.reference, i.asset): i for i in
                    Item.objects.select_for_update().filter(incident=incident, user_id__in=user_ids).order_by("pk")}
        plan = _ItemPlan(incident, run)
        for user_id, (detected, _) in results.items():
            for event in detected:
                if event.is_owed:
                    plan.apply(user_id, event, _item_values(event, incident, prices), existing)
        for key, item in existing.items():
            if key not in plan.seen:
                plan.vanished(item)
        plan.save()
        _findings_save(incident, user_ids, results, run)
    return results


class _ItemPlan:
    """The inserts, updates, flags and deletions that one chunk's detection asks for."""

    def __init__(self, incident: Incident, run: DetectionRun | None):
        self.incident, self.run = incident, run
        self.seen: set[tuple] = set()
        self.new: list[Item] = []
        self.changed: list[Item] = []
        self.deleted: list[int] = []
        self.events: list[ItemEvent] = []
        self.now = timezone.now()

    def apply(self, user_id: int, event: d.Detected, values: dict, existing: dict) -> None:
        key = (user_id, event.kind, event.reference, event.asset)
        self.seen.add(key)
        item = existing.get(key)
        if item is None:
            self.new.append(Item(incident=self.incident, user_id=user_id, kind=event.kind,
                                 reference=event.reference, asset=event.asset, detection_run=self.run, **values))
        elif item.is_decided:
            if values["amount"] != item.amount or values["status"] == Item.Status.NEEDS_REVIEW:
                self._flag(item, values["amount"], "detection now gives a different result"
                           + (f": {values['review_reason']}" if values["review_reason"] else ""))
            elif item.flagged_at:
                self._unflag(item)
        elif any(getattr(item, f) != values[f] for f in ITEM_RESULT_FIELDS):
            old = item.amount
            for field_name, value in values.items():
                setattr(item, field_name, value)
            item.detection_run = self.run
            self.changed.append(item)
            if old != item.amount or values["status"] == Item.Status.APPROVED:
                self.events.append(ItemEvent(item=item, actor=DETECTION_ACTOR, action="updated", old_amount=old,
                                             new_amount=item.amount, note=_status_note(item)))

    def vanished(self, item: Item) -> None:
        if item.is_decided:
            self._flag(item, None, "no longer detected")
        else:
            self.deleted.append(item.pk)
            logger.info("item %s of incident %s is no longer detected; removed", item, self.incident.slug)

    def _flag(self, item: Item, new_amount, reason: str) -> None:
        if item.flagged_at and item.flagged_amount == new_amount and item.flag_reason == reason:
            return  # already flagged with these numbers: a repeated detection adds nothing
        item.flagged_at, item.flagged_amount, item.flag_reason = self.now, new_amount, reason
        self.changed.append(item)
        self.events.append(ItemEvent(item=item, actor=DETECTION_ACTOR, action="flagged", old_amount=item.amount,
                                     new_amount=new_amount, note=reason))

    def _unflag(self, item: Item) -> None:
        item.flagged_at, item.flagged_amount, item.flag_reason = None, None, ""
        self.changed.append(item)

    def save(self) -> None:
        if self.deleted:
            Item.objects.filter(pk__in=self.deleted).delete()
        created = Item.objects.bulk_create(self.new)
        for item in created:
            self.events.append(ItemEvent(item=item, actor=DETECTION_ACTOR, action="detected",
                                         new_amount=item.amount, note=_status_note(item)))
        for item in self.changed:
            item.updated_at = self.now
        if self.changed:
            Item.objects.bulk_update(self.changed, [*ITEM_RESULT_FIELDS, "detection_run", "flagged_at",
                                                    "flagged_amount", "flag_reason", "updated_at"])
        ItemEvent.objects.bulk_create(self.events)


def _status_note(item: Item) -> str:
    if item.status == Item.Status.APPROVED and item.approval == Item.Approval.POLICY:
        return f"approved by policy (USDC value {item.usdc_value})"
    if item.status == Item.Status.NEEDS_REVIEW:
        return f"needs review: {item.review_reason}"
    return f"awaiting {item.get_approval_display()}"


def _findings_save(incident: Incident, user_ids: list[int], results: dict, run: DetectionRun | None) -> None:
    Finding.objects.filter(incident=incident, user_id__in=user_ids).delete()
    Finding.objects.bulk_create(
        Finding(incident=incident, user_id=user_id, kind=f.kind, reference=f.reference, asset=f.asset,
                quantity=f.quantity, description=f.description,
                inputs=json.loads(json.dumps(f.inputs, default=str)), detection_run=run)
        for user_id, (_, findings) in results.items() for f in findings
    )


# --- claims ---

VERIFICATION_LIFETIME = timedelta(hours=24)
ATTACHMENT_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"%PDF-": "application/pdf"}
MAX_ATTACHMENTS = 5
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
REFERENCE_FIELDS = ("trade_id", "order_id", "withdrawal_id", "transaction_hash", "market_symbol",
                    "approximate_time", "claimed_amount", "claimed_asset")


class ClaimRefused(Exception):
    """A claim that cannot be taken; `field` names the input at fault, if one is."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def attachment_content_type(head: bytes) -> str | None:
    """PNG, JPEG or PDF, judged by the file's first bytes, not its name."""
    return next((kind for magic, kind in ATTACHMENT_TYPES.items() if head.startswith(magic)), None)


def attachments_check(files: list) -> list[tuple]:
    """Each upload with its content type, or ClaimRefused naming the first bad one."""
    if len(files) > MAX_ATTACHMENTS:
        raise ClaimRefused(_("At most %(count)d files.") % {"count": MAX_ATTACHMENTS}, field="attachments")
    checked = []
    for upload in files:
        if upload.size > MAX_ATTACHMENT_BYTES:
            raise ClaimRefused(_("%(name)s is larger than 10 MB") % {"name": upload.name}, field="attachments")
        head = upload.read(8)
        upload.seek(0)
        content_type = attachment_content_type(head)
        if content_type is None:
            raise ClaimRefused(_("%(name)s is not a PNG, JPEG or PDF file") % {"name": upload.name},
                               field="attachments")
        checked.append((upload, content_type))
    return checked


def _attachments_save(claim: Claim, files: list, note: str = "") -> None:
    for upload, content_type in attachments_check(files):
        sha = hashlib.sha256()
        for chunk in upload.chunks():
            sha.update(chunk)
        upload.seek(0)
        ClaimAttachment.objects.create(claim=claim, file=upload, original_name=upload.name[:255],
                                       content_type=content_type, size=upload.size, sha256=sha.hexdigest(),
                                       note=note)


def claim_transition(*, claim: Claim, to: str, actor: str, reason: str = "") -> None:
    ClaimTransition.objects.create(claim=claim, actor=actor, from_status=claim.status or "", to_status=to,
                                   reason=reason)
    claim.status = to
    claim.save(update_fields=["status", "updated_at"])


@transaction.atomic
def claim_create(*, incident: Incident, user_id: int, channel: str, kind: str, description: str = "",
                 references: dict | None = None, language: str = "en", attachments: list | None = None,
                 actor: str) -> Claim:
    """File a claim. From the web it waits, unverified, for the link sent to the address on file;
    from the API (the exchange has logged the user in) or staff it is received at once."""
    if timezone.now() > incident.claims_close:
        closed = {"title": incident.title, "close": f"{incident.claims_close:%Y-%m-%d %H:%M}"}
        raise ClaimRefused(_("Claims for %(title)s closed on %(close)s UTC.") % closed, field="incident")
    account = ledger.account_get(user_id)
    if account is None:
        raise ClaimRefused(_("There is no account %(user_id)s.") % {"user_id": user_id}, field="user_id")
    attachments = attachments or []
    attachments_check(attachments)
    web = channel == Claim.Channel.WEB
    status = Claim.Status.UNVERIFIED if web else Claim.Status.RECEIVED
    claim = Claim.objects.create(incident=incident, user_id=user_id, channel=channel, kind=kind,
                                 description=description, language=language, status=status,
                                 **{k: v for k, v in (references or {}).items() if k in REFERENCE_FIELDS})
    filed = ClaimTransition.objects.create(claim=claim, actor=actor, from_status="", to_status=status,
                                           reason=f"filed through {channel}")
    _attachments_save(claim, attachments)
    if web:
        _verification_send(claim, account)
    else:
        _claim_received(claim)
    _relations_known(claim, items=[], transitions=[filed])
    return claim


def claim_file(*, incident_slug: str, user_id: int, channel: str, kind: str, description: str = "",
               references: dict | None = None, language: str = "en", actor: str) -> Claim:
    """File a claim that is received at once: from the API, whose caller has logged the user in,
    or from staff. The same checks, rows and errors as claim_create.

    On PostgreSQL this is one statement (_FILE_SQL): the incident, its closing time, the account
    and both inserts in one round trip, atomic as any statement is. The front end files hundreds
    of claims a second in the hours after an incident, and each ORM query costs more time in
    Python than in the database. Elsewhere (the SQLite demo) it goes through claim_create.
    """
    if connection.vendor != "postgresql":
        incident = Incident.objects.filter(slug=incident_slug).first()
        if incident is None:
            raise ClaimRefused(_("There is no incident %(slug)s.") % {"slug": incident_slug}, field="incident")
        return claim_create(incident=incident, user_id=user_id, channel=channel, kind=kind, description=description,
                            references=references, language=language, actor=actor)
    now = timezone.now()
    values = {**{name: None for name in _NULLABLE_REFERENCES}, **{name: "" for name in _TEXT_REFERENCES},
              **{k: v for k, v in (references or {}).items() if k in REFERENCE_FIELDS},
              "public_id": uuid.uuid4(), "slug": incident_slug, "user_id": user_id, "channel": channel, "kind": kind,
              "description": description, "language": language, "status": Claim.Status.RECEIVED, "now": now,
              "actor": actor, "reason": f"filed through {channel}"}
    with connection.cursor() as cursor:
        cursor.execute(_FILE_SQL, values)
        *incident_row, claim_id, transition_id = cursor.fetchone()
    if incident_row[0] is None:
        raise ClaimRefused(_("There is no incident %(slug)s.") % {"slug": incident_slug}, field="incident")
    incident = Incident.from_db(connection.alias, _INCIDENT_FIELDS, incident_row)
    if claim_id is None:
        if now > incident.claims_close:
            closed = {"title": incident.title, "close": f"{incident.claims_close:%Y-%m-%d %H:%M}"}
            raise ClaimRefused(_("Claims for %(title)s closed on %(close)s UTC.") % closed, field="incident")
        raise ClaimRefused(_("There is no account %(user_id)s.") % {"user_id": user_id}, field="user_id")
    claim = Claim(id=claim_id, incident=incident, merged_into=None, created_at=now, updated_at=now,
                  **{name: values[name] for name in (*REFERENCE_FIELDS, "public_id", "user_id", "channel", "kind",
                                                     "description", "language", "status")})
    claim._state.adding, claim._state.db = False, connection.alias
    filed = ClaimTransition(id=transition_id, claim=claim, at=now, actor=actor, from_status="",
                            to_status=values["status"], reason=values["reason"])
    filed._state.adding, filed._state.db = False, connection.alias
    _claim_received(claim)
    _relations_known(claim, items=[], transitions=[filed])
    return claim


_NULLABLE_REFERENCES = ("trade_id", "withdrawal_id", "approximate_time", "claimed_amount")
_TEXT_REFERENCES = tuple(name for name in REFERENCE_FIELDS if name not in _NULLABLE_REFERENCES)
_INCIDENT_FIELDS = [field.attname for field in Incident._meta.concrete_fields]
# What claim_create writes for a claim received at once; tests/claims/test_filing.py checks that
# both write the same rows, so a field added to Claim or ClaimTransition must be added here too.
_FILE_SQL = """
WITH incident AS (
    SELECT {incident_columns} FROM claims_incident WHERE slug = %(slug)s
), claim AS (
    INSERT INTO claims_claim (
        public_id, incident_id, user_id, channel, kind, description, trade_id, order_id, withdrawal_id,
        transaction_hash, market_symbol, approximate_time, claimed_amount, claimed_asset, language, status,
        merged_into_id, staff_note, candidate_events, no_loss_details, created_at, updated_at)
    SELECT %(public_id)s, incident.id, %(user_id)s, %(channel)s, %(kind)s, %(description)s, %(trade_id)s,
        %(order_id)s, %(withdrawal_id)s, %(transaction_hash)s, %(market_symbol)s, %(approximate_time)s,
        %(claimed_amount)s, %(claimed_asset)s, %(language)s, %(status)s, NULL, '', '[]', '[]', %(now)s, %(now)s
    FROM incident
    WHERE incident.claims_close >= %(now)s
        AND EXISTS (SELECT 1 FROM exchange_account WHERE user_id = %(user_id)s)
    RETURNING id
), filed AS (
    INSERT INTO claims_claimtransition (claim_id, at, actor, from_status, to_status, reason)
    SELECT id, %(now)s, %(actor)s, '', %(status)s, %(reason)s FROM claim
    RETURNING id
)
SELECT {incident_selected}, (SELECT id FROM claim), (SELECT id FROM filed)
FROM (SELECT 1) AS one LEFT JOIN incident ON TRUE
""".format(incident_columns=", ".join(f.column for f in Incident._meta.concrete_fields),
           incident_selected=", ".join(f"incident.{f.column}" for f in Incident._meta.concrete_fields))


def _relations_known(instance, **relations: list) -> None:
    """Record what an instance's relations hold, as prefetch_related does, where this transaction
    wrote them itself (a new claim: no items, one transition): showing it needs no read back.
    Django keeps prefetched rows in `_prefetched_objects_cache`, as querysets already evaluated."""
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, rows in relations.items():
        queryset = getattr(instance, name).all()
        queryset._result_cache, queryset._prefetch_done = list(rows), True
        cache[name] = queryset


def _verification_send(claim: Claim, account) -> None:

    token = secrets.token_urlsafe(32)
    ClaimVerification.objects.create(claim=claim, token_hash=hashlib.sha256(token.encode()).hexdigest(),
                                     expires_at=timezone.now() + VERIFICATION_LIFETIME)
    context = {"verify_url": absolute(reverse("claims:verify", args=[token])),
               "hours": int(VERIFICATION_LIFETIME.total_seconds() // 3600)}
    notify(key=f"claim:{claim.id}:verification:{token[:12]}", kind="verification", user_id=claim.user_id,
           claim=claim, account=account, new_key=True, context=context)


class VerificationFailed(Exception):
    pass


@transaction.atomic
def claim_verify(*, token: str) -> Claim:
    """Use a verification link: once, before it expires."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    verification = ClaimVerification.objects.select_related("claim").filter(token_hash=digest).first()
    if verification is None:
        raise VerificationFailed(_("This link is not valid."))
    # The conditional UPDATE makes the link single-use even if it is clicked twice at once.
    used = ClaimVerification.objects.filter(id=verification.id, used_at__isnull=True,
                                            expires_at__gte=timezone.now()).update(used_at=timezone.now())
    claim = Claim.objects.select_for_update().get(id=verification.claim_id)
    if used != 1:
        if claim.status != Claim.Status.UNVERIFIED:
            return claim  # already confirmed: the link just shows the claim again
        raise VerificationFailed(_("This link has expired; please file the claim again."))
    if claim.status == Claim.Status.UNVERIFIED:
        claim_transition(claim=claim, to=Claim.Status.RECEIVED, actor=f"claimant {claim.user_id}",
                         reason="e-mail address on file confirmed")
        _claim_received(claim)
    return claim


def _claim_received(claim: Claim) -> None:
    """Received: matching runs after commit; it merges a repeated claim into the first, else
    acknowledges the claim and matches it (claims/matching.py), so filing a claim stays short."""
    from .tasks import claim_match_task  # tasks import this module

    claim_id = claim.id
    transaction.on_commit(lambda: claim_match_task.delay(claim_id=claim_id))


def claim_merge_if_repeated(claim: Claim, others: list[Claim], *, actor: str) -> Claim | None:
    """Merge a received claim into the first of the claimant's others with the same references.

    `others`: the claimant's other claims in this incident, locked, in the order they were filed.
    One that is still `received` (its own matching has not run) counts only if it was filed
    earlier: of two repeated claims received together, the later is merged into the earlier,
    never each into the other.
    """
    key = claim.reference_key()
    first = next((other for other in others
                  if other.merged_into_id is None and other.reference_key() == key
                  and other.status not in (Claim.Status.UNVERIFIED, Claim.Status.MERGED)
                  and (other.status != Claim.Status.RECEIVED or other.id < claim.id)), None)
    if first is None:
        return None
    claim.merged_into = first
    claim.save(update_fields=["merged_into"])
    claim_transition(claim=claim, to=Claim.Status.MERGED, actor=actor, reason=f"same references as claim #{first.id}")
    if claim.description:
        ClaimTransition.objects.create(claim=first, actor=actor, from_status=first.status, to_status=first.status,
                                       reason=f"claim #{claim.id} merged here: {claim.description}")
    notify(key=f"claim:{claim.id}:acknowledgement", kind="acknowledgement", user_id=claim.user_id, claim=first,
           new_key=True, context={"merged": True})
    return first


@transaction.atomic
def claim_add_information(*, claim: Claim, text: str, attachments: list, actor: str) -> None:
    if attachments:
        _attachments_save(claim, attachments, note=text)
    ClaimTransition.objects.create(claim=claim, actor=actor, from_status=claim.status, to_status=claim.status,
                                   reason=f"information added: {text}" if text else "attachment added")


def tasks_requeue(*, older_than: timedelta) -> tuple[list[int], list[int]]:
    """Enqueue again what waited longer than `older_than` for a task that never came: claims still
    `received` (their matching task was lost: the process stopped between commit and publish, or
    the broker lost it) and messages never tried. Harmless for one that is only late: matching and
    sending are idempotent. Returns (claim ids, notification ids)."""
    from .tasks import claim_match_task, notification_send_task  # tasks import this module

    cutoff = timezone.now() - older_than
    claim_ids = list(Claim.objects.filter(status=Claim.Status.RECEIVED, updated_at__lt=cutoff)
                     .order_by("id").values_list("id", flat=True))
    notification_ids = list(Notification.objects.filter(status=Notification.Status.PENDING, attempts=0,
                                                        created_at__lt=cutoff)
                            .order_by("id").values_list("id", flat=True))
    for claim_id in claim_ids:
        claim_match_task.delay(claim_id=claim_id)
    for notification_id in notification_ids:
        notification_send_task.delay(notification_id=notification_id)
    return claim_ids, notification_ids


@transaction.atomic
def claims_for_found_users(*, incident: Incident, actor: str) -> int:
    """Users the engine found owed something who never wrote in: a claim on their behalf, linked
    to their items, and an e-mail telling them what was found and how to see it. Idempotent."""

    claimants = set(Claim.objects.filter(incident=incident).values_list("user_id", flat=True))
    owed = (Item.objects.filter(incident=incident).exclude(status=Item.Status.REJECTED)
            .exclude(user_id__in=claimants).order_by("user_id", "id"))
    by_user: dict[int, list[Item]] = {}
    for item in owed:
        by_user.setdefault(item.user_id, []).append(item)
    for user_id, items in by_user.items():
        account = ledger.account_get(user_id)
        claim = Claim.objects.create(incident=incident, user_id=user_id, channel=Claim.Channel.STAFF,
                                     kind="other", status="", description="found by the review of the ledger",
                                     language=_language_of(account))
        claim_transition(claim=claim, to=Claim.Status.MATCHED, actor=actor,
                         reason=f"found by detection: {len(items)} item(s)")
        ClaimItem.objects.bulk_create([ClaimItem(claim=claim, item=item) for item in items])
        notify(key=f"incident:{incident.id}:found:{user_id}", kind="found", user_id=user_id, claim=claim)
    return len(by_user)


def _language_of(account) -> str:
    return language_for(account.locale if account else None)


DECISIONS = {Claim.Status.IN_REVIEW, Claim.Status.APPROVED, Claim.Status.REJECTED}


@transaction.atomic
def claim_decide(*, claim_id: int, to: str, actor: str, reason: str = "") -> Claim:
    """A staff decision on a claim, recorded as a transition; approval and rejection are mailed."""

    if to not in DECISIONS:
        raise ValueError(f"staff decide in_review, approved or rejected, not {to!r}")
    claim = Claim.objects.select_for_update().get(id=claim_id)
    if claim.status in (to, Claim.Status.UNVERIFIED, Claim.Status.MERGED, Claim.Status.PAID):
        return claim  # nothing to decide (deciding twice is a no-op)
    claim_transition(claim=claim, to=to, actor=actor, reason=reason)
    if to != Claim.Status.IN_REVIEW:
        notify(key=f"claim:{claim.id}:decision:{to}", kind="decision", user_id=claim.user_id, claim=claim)
    return claim
