"""Writes of claims: filing, verification, merging, decisions and the users found who never wrote in."""

import hashlib
import json
import secrets
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange import selectors as ledger

from .. import queue
from ..detectors import quantize
from ..models import (
    AuditRecord,
    Claim,
    ClaimAttachment,
    ClaimItem,
    ClaimSubmission,
    ClaimVerification,
    Incident,
    Item,
    Notification,
)
from ..models.claims import EXTENSIONS
from ..notifications import absolute, language_for, notify, notify_many
from ..roles import APPROVING_ROLES, Actor, Refused, roles_of
from .audit import audit_entry, audit_record, audit_write

# --- claims ---

VERIFICATION_LIFETIME = timedelta(hours=24)
ATTACHMENT_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"%PDF-": "application/pdf"}
MAX_ATTACHMENTS = 5
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
REFERENCE_FIELDS = (
    "trade_id",
    "order_id",
    "withdrawal_id",
    "transaction_hash",
    "market_symbol",
    "approximate_time",
    "claimed_amount",
    "claimed_asset",
)


UPPER_REFERENCES = ("market_symbol", "claimed_asset")  # as markets.jsonl and assets.jsonl write them
TEXT_REFERENCES = ("order_id", "transaction_hash", "market_symbol", "claimed_asset")


def references_normalise(references: dict | None) -> dict:
    """A claim's references as every channel stores them (web form, API, e-mail, staff): text
    stripped, market and asset in upper case, empty values left out. `eth_usdc_perp` from the API
    matches as `ETH_USDC_PERP` from the form does."""
    values = {}
    for name, value in (references or {}).items():
        if name not in REFERENCE_FIELDS:
            continue
        if name in TEXT_REFERENCES:
            value = (value or "").strip()
            value = value.upper() if name in UPPER_REFERENCES else value
        if value not in (None, ""):
            values[name] = value
    return values


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
    checked, refused = attachments_split(files)
    if refused:
        raise ClaimRefused(refused[0][1], field="attachments")
    return checked


def attachments_split(files: list) -> tuple[list[tuple], list[tuple[str, str]]]:
    """The uploads we take, each with its content type, and those we refuse: (name, why)."""
    if len(files) > MAX_ATTACHMENTS:
        raise ClaimRefused(_("At most %(count)d files.") % {"count": MAX_ATTACHMENTS}, field="attachments")
    checked, refused = [], []
    for upload in files:
        if upload.size > MAX_ATTACHMENT_BYTES:
            refused.append((upload.name, _("%(name)s is larger than 10 MB") % {"name": upload.name}))
            continue
        head = upload.read(8)
        upload.seek(0)
        content_type = attachment_content_type(head)
        if content_type is None:
            refused.append((upload.name, _("%(name)s is not a PNG, JPEG or PDF file") % {"name": upload.name}))
            continue
        checked.append((upload, content_type))
    return checked, refused


def _sha256(upload) -> str:
    sha = hashlib.sha256()
    for chunk in upload.chunks():
        sha.update(chunk)
    upload.seek(0)
    return sha.hexdigest()


def _attachments_save(claim: Claim, files: list, note: str = "", checked: list | None = None) -> None:
    for upload, content_type in attachments_check(files) if checked is None else checked:
        ClaimAttachment.objects.create(
            claim=claim,
            file=upload,
            original_name=upload.name[:255],
            content_type=content_type,
            size=upload.size,
            sha256=_sha256(upload),
            note=note,
        )


def _uploads_store(files: list, folder: str) -> list[dict]:
    """Checked uploads written to storage, each named from its detected type."""
    stored = []
    for upload, content_type in attachments_check(files):
        name = default_storage.save(f"{folder}/{uuid.uuid4().hex}{EXTENSIONS[content_type]}", upload)
        stored.append(
            {
                "path": name,
                "name": upload.name[:255],
                "content_type": content_type,
                "size": upload.size,
                "sha256": _sha256(upload),
            }
        )
    return stored


def claim_transition(*, claim: Claim, to: str, actor: str, reason: str = "") -> AuditRecord:
    """Move a claim to another status, with its record in the audit trail."""
    record = claim_record(claim=claim, actor=actor, action="status", reason=reason, to=to)
    claim.status = to
    claim.save(update_fields=["status", "updated_at"])
    return record


def claim_record(
    *, claim: Claim, actor: str, action: str, reason: str = "", to: str | None = None, after: dict | None = None
) -> AuditRecord:
    """A claim's record in the audit trail; every one names the status before and after, so the
    claim's history reads as its transitions."""
    return audit_record(
        actor=actor,
        object_type="claim",
        object_id=claim.id,
        action=action,
        reason=reason,
        before={"status": claim.status} if claim.status else None,
        after={"status": to or claim.status, **(after or {})},
    )


def _refuse_if_closed(incident: Incident, now) -> None:
    if not incident.is_open_for_claims(now):
        closed = {"title": incident.title, "close": f"{incident.claims_close:%Y-%m-%d %H:%M}"}
        raise ClaimRefused(_("Claims for %(title)s closed on %(close)s UTC.") % closed, field="incident")


def _no_account(user_id: int) -> ClaimRefused:
    return ClaimRefused(_("There is no account %(user_id)s.") % {"user_id": user_id}, field="user_id")


def _no_incident(slug: str) -> ClaimRefused:
    return ClaimRefused(_("There is no incident %(slug)s.") % {"slug": slug}, field="incident")


@transaction.atomic
def web_claim_submit(*, incident: Incident, values: dict, attachments: list, language: str) -> ClaimSubmission:
    """Take a claim from the web form: everything that does not depend on the account is checked
    here (claims open, attachments by content), then the same work is done whatever the account
    and e-mail typed: the submission and its files are stored and a task decides (web_submission_file)."""
    _refuse_if_closed(incident, timezone.now())
    folder = f"claims/submissions/{uuid.uuid4().hex}"
    submission = ClaimSubmission.objects.create(
        incident=incident,
        language=language,
        data={
            **json.loads(json.dumps(values, cls=DjangoJSONEncoder)),
            "attachments": _uploads_store(attachments, folder),
        },
    )
    queue.enqueue_on_commit(queue.WEB_SUBMISSION_FILE, submission_id=submission.id)
    return submission


def web_submission_file(*, submission_id: int) -> str:
    """File the submitted claim if its account exists and the e-mail typed is the one on file
    (the link then goes to that address); otherwise discard it with its files. Either way what
    was typed is emptied. Idempotent: a handled submission is left as it is."""
    with transaction.atomic():
        submission = ClaimSubmission.objects.select_for_update().select_related("incident").get(id=submission_id)
        if submission.status != ClaimSubmission.Status.PENDING:
            return submission.status
        data, claim = submission.data, None
        account = ledger.account_get(data["user_id"])
        if account is not None and account.email.strip().lower() == data["email"].strip().lower():
            try:
                claim = claim_create(
                    incident=submission.incident,
                    user_id=account.user_id,
                    channel=Claim.Channel.WEB,
                    kind=data["kind"],
                    description=data["description"],
                    references=_references(data["references"]),
                    language=submission.language,
                    stored=data["attachments"],
                    actor=claimant_actor(account.user_id),
                )
            except ClaimRefused:  # e.g. claims closed between the form and the task
                claim = None
        if claim is None:
            transaction.on_commit(lambda: [default_storage.delete(f["path"]) for f in data["attachments"]])
        submission.status = ClaimSubmission.Status.FILED if claim else ClaimSubmission.Status.DISCARDED
        submission.claim, submission.data, submission.handled_at = claim, {}, timezone.now()
        submission.save()
    return submission.status


def _references(stored: dict) -> dict:
    """The references as the form cleaned them (JSON gave back text for times and amounts)."""
    values = dict(stored)
    if values.get("approximate_time"):
        values["approximate_time"] = datetime.fromisoformat(values["approximate_time"])
    if values.get("claimed_amount") is not None:
        values["claimed_amount"] = Decimal(values["claimed_amount"])
    return values


@transaction.atomic
def claim_create(
    *,
    incident: Incident,
    user_id: int,
    channel: str,
    kind: str,
    description: str = "",
    references: dict | None = None,
    language: str = "en",
    attachments: list | None = None,
    stored: list[dict] | None = None,
    actor: str,
    verified: bool | None = None,
    account=None,
) -> Claim:
    """File a claim. From the web it waits, unverified, for the link sent to the address on file;
    from the API (the exchange has logged the user in) or staff it is received at once. An
    e-mail's claim says which (`verified`: whether our server vouched for its sender); a caller
    that has read the account passes it."""
    _refuse_if_closed(incident, timezone.now())
    account = account if account is not None and account.user_id == user_id else ledger.account_get(user_id)
    if account is None:
        raise _no_account(user_id)
    attachments = attachments or []
    attachments_check(attachments)
    web = channel == Claim.Channel.WEB if verified is None else not verified
    status = Claim.Status.UNVERIFIED if web else Claim.Status.RECEIVED
    claim = Claim.objects.create(
        incident=incident,
        user_id=user_id,
        channel=channel,
        kind=kind,
        description=description,
        language=language,
        status=status,
        **references_normalise(references),
    )
    filed = audit_record(
        actor=actor,
        object_type="claim",
        object_id=claim.id,
        action="filed",
        after={"status": status},
        reason=f"filed through {channel}",
    )
    _attachments_save(claim, attachments)
    _stored_attach(claim, stored)
    if web:
        _verification_send(claim, account)
    else:
        _claim_received(claim)
    _relations_known(claim, items=[])
    claim.history = [filed]
    return claim


def claim_file(
    *,
    incident_slug: str,
    user_id: int,
    channel: str,
    kind: str,
    description: str = "",
    references: dict | None = None,
    language: str = "en",
    actor: str,
) -> Claim:
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
            raise _no_incident(incident_slug)
        return claim_create(
            incident=incident,
            user_id=user_id,
            channel=channel,
            kind=kind,
            description=description,
            references=references,
            language=language,
            actor=actor,
        )
    now = timezone.now()
    values = {
        **{name: None for name in _NULLABLE_REFERENCES},
        **{name: "" for name in _TEXT_REFERENCES},
        **references_normalise(references),
        "public_id": uuid.uuid4(),
        "slug": incident_slug,
        "user_id": user_id,
        "channel": channel,
        "kind": kind,
        "description": description,
        "language": language,
        "status": Claim.Status.RECEIVED,
        "now": now,
        "actor": actor,
        "reason": f"filed through {channel}",
        "filed": json.dumps({"status": Claim.Status.RECEIVED}),
    }
    with connection.cursor() as cursor:
        cursor.execute(_FILE_SQL, values)
        *incident_row, claim_id, record_id = cursor.fetchone()
    if incident_row[0] is None:
        raise _no_incident(incident_slug)
    incident = Incident.from_db(connection.alias, _INCIDENT_FIELDS, incident_row)
    if claim_id is None:  # closed, or no such account, in claim_create's order
        _refuse_if_closed(incident, now)
        raise _no_account(user_id)
    claim = Claim(
        id=claim_id,
        incident=incident,
        merged_into=None,
        created_at=now,
        updated_at=now,
        **{
            name: values[name]
            for name in (
                *REFERENCE_FIELDS,
                "public_id",
                "user_id",
                "channel",
                "kind",
                "description",
                "language",
                "status",
            )
        },
    )
    claim._state.adding, claim._state.db = False, connection.alias
    filed = AuditRecord(
        id=record_id,
        at=now,
        actor=actor,
        object_type="claim",
        object_id=claim_id,
        action="filed",
        before=None,
        after=json.loads(values["filed"]),
        reason=values["reason"],
    )
    filed._state.adding, filed._state.db = False, connection.alias
    _claim_received(claim)
    _relations_known(claim, items=[])
    claim.history = [filed]
    return claim


_NULLABLE_REFERENCES = ("trade_id", "withdrawal_id", "approximate_time", "claimed_amount")
_TEXT_REFERENCES = tuple(name for name in REFERENCE_FIELDS if name not in _NULLABLE_REFERENCES)
_INCIDENT_FIELDS = [field.attname for field in Incident._meta.concrete_fields]
# What claim_create writes for a claim received at once; tests/claims/test_filing.py checks that
# both write the same rows, so a field added to Claim or AuditRecord must be added here too. The
# record's id comes from its column default, claims_audit_next_id() (migration 0006).
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
    INSERT INTO claims_auditrecord (at, actor, object_type, object_id, action, before, after, reason)
    SELECT %(now)s, %(actor)s, 'claim', id, 'filed', NULL, %(filed)s::jsonb, %(reason)s FROM claim
    RETURNING id
)
SELECT {incident_selected}, (SELECT id FROM claim), (SELECT id FROM filed)
FROM (SELECT 1) AS one LEFT JOIN incident ON TRUE
""".format(
    incident_columns=", ".join(f.column for f in Incident._meta.concrete_fields),
    incident_selected=", ".join(f"incident.{f.column}" for f in Incident._meta.concrete_fields),
)


def _relations_known(instance, **relations: list) -> None:
    """Record what an instance's relations hold, as prefetch_related does, where this transaction
    wrote them itself (a new claim: no items): showing it needs no read back.
    Django keeps prefetched rows in `_prefetched_objects_cache`, as querysets already evaluated."""
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, rows in relations.items():
        queryset = getattr(instance, name).all()
        queryset._result_cache, queryset._prefetch_done = list(rows), True
        cache[name] = queryset


def _verification_send(claim: Claim, account) -> None:

    token = secrets.token_urlsafe(32)
    ClaimVerification.objects.create(
        claim=claim,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=timezone.now() + VERIFICATION_LIFETIME,
    )
    context = {
        "verify_url": absolute(reverse("claims:verify", args=[token])),
        "hours": int(VERIFICATION_LIFETIME.total_seconds() // 3600),
    }
    notify(
        key=f"claim:{claim.id}:verification:{token[:12]}",
        kind="verification",
        user_id=claim.user_id,
        claim=claim,
        account=account,
        new_key=True,
        context=context,
    )


class VerificationFailed(Exception):
    pass


class VerificationUsed(VerificationFailed):
    """The link was opened before: the claim it confirmed, and when."""

    def __init__(self, claim: Claim, used_at):
        super().__init__(_("This link was already used: your claim is confirmed."))
        self.claim, self.used_at = claim, used_at


@transaction.atomic
def claim_verify(*, token: str) -> Claim:
    """Use a verification link: once, before it expires."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    verification = ClaimVerification.objects.select_related("claim").filter(token_hash=digest).first()
    if verification is None:
        raise VerificationFailed(_("This link is not valid."))
    # The conditional UPDATE makes the link single-use even if it is clicked twice at once.
    used = ClaimVerification.objects.filter(
        id=verification.id, used_at__isnull=True, expires_at__gte=timezone.now()
    ).update(used_at=timezone.now())
    claim = Claim.objects.select_for_update().get(id=verification.claim_id)
    if used != 1:
        if verification.used_at is not None:
            raise VerificationUsed(claim, verification.used_at)  # says so, and links the status page
        if claim.status != Claim.Status.UNVERIFIED:
            return claim  # confirmed through another of its links
        raise VerificationFailed(_("This link has expired; please file the claim again."))
    if claim.status == Claim.Status.UNVERIFIED:
        claim_transition(
            claim=claim,
            to=Claim.Status.RECEIVED,
            actor=claimant_actor(claim.user_id),
            reason="e-mail address on file confirmed",
        )
        _claim_received(claim)
    return claim


def _claim_received(claim: Claim) -> None:
    """Received: matching runs after commit; it merges a repeated claim into the first, else
    acknowledges the claim and matches it (claims/matching.py), so filing a claim stays short."""
    queue.enqueue_on_commit(queue.CLAIM_MATCH, claim_id=claim.id)


def claim_merge_if_repeated(claim: Claim, others: list[Claim], *, actor: str) -> Claim | None:
    """Merge a received claim into the first of the claimant's others with the same references.

    `others`: the claimant's other claims in this incident, locked, in the order they were filed.
    One that is still `received` (its own matching has not run) counts only if it was filed
    earlier: of two repeated claims received together, the later is merged into the earlier,
    never each into the other.
    """
    key = claim.reference_key()
    first = next(
        (
            other
            for other in others
            if other.merged_into_id is None
            and other.reference_key() == key
            and other.status not in (Claim.Status.UNVERIFIED, Claim.Status.MERGED)
            and (other.status != Claim.Status.RECEIVED or other.id < claim.id)
        ),
        None,
    )
    if first is None:
        return None
    claim.merged_into = first
    claim.save(update_fields=["merged_into"])
    claim_transition(claim=claim, to=Claim.Status.MERGED, actor=actor, reason=f"same references as claim #{first.id}")
    if claim.description:
        claim_record(
            claim=first, actor=actor, action="merged_here", reason=f"claim #{claim.id} merged here: {claim.description}"
        )
    notify(
        key=f"claim:{claim.id}:acknowledgement",
        kind="acknowledgement",
        user_id=claim.user_id,
        claim=first,
        context={"merged": True},
    )
    return first


def _stored_attach(claim: Claim, stored: list[dict] | None, note: str = "") -> None:
    """Files already written to storage (named from their detected type) become the claim's."""
    ClaimAttachment.objects.bulk_create(
        ClaimAttachment(
            claim=claim,
            file=f["path"],
            original_name=f["name"],
            content_type=f["content_type"],
            size=f["size"],
            sha256=f["sha256"],
            note=note,
        )
        for f in stored or []
    )


@transaction.atomic
def claim_add_information(
    *, claim: Claim, text: str, attachments: list, actor: str, stored: list[dict] | None = None
) -> list[tuple[str, str]]:
    """Keep what the claimant adds (from the status page, or a reply by e-mail whose files are
    `stored` already): the text and every valid file, even when another file is refused. Returns
    the refused files, (name, why); nothing is recorded if nothing was kept."""
    checked, refused = attachments_split(attachments)
    if not text and not checked and not stored:
        return refused
    _attachments_save(claim, [], note=text, checked=checked)
    _stored_attach(claim, stored, note=text)
    count = len(checked) + len(stored or [])
    claim_record(
        claim=claim,
        actor=actor,
        action="information_added",
        after={"attachments": count},
        reason=f"information added: {text}" if text else "attachment added",
    )
    return refused


def tasks_requeue(*, older_than: timedelta) -> tuple[list[int], list[int], list[int]]:
    """Enqueue again what waited longer than `older_than` for a task that never came: claims still
    `received` (their matching task was lost: the process stopped between commit and publish, or
    the broker lost it), messages never tried and web submissions never handled. Harmless for
    one that is only late: each task is idempotent. Returns (claim, notification, submission) ids."""
    cutoff = timezone.now() - older_than
    claim_ids = list(
        Claim.objects.filter(status=Claim.Status.RECEIVED, updated_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)
    )
    notification_ids = list(
        Notification.objects.filter(status=Notification.Status.PENDING, attempts=0, created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)
    )
    submission_ids = list(
        ClaimSubmission.objects.filter(status=ClaimSubmission.Status.PENDING, created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for claim_id in claim_ids:
        queue.enqueue(queue.CLAIM_MATCH, claim_id=claim_id)
    for notification_id in notification_ids:
        queue.enqueue(queue.NOTIFICATION_SEND, notification_id=notification_id)
    for submission_id in submission_ids:
        queue.enqueue(queue.WEB_SUBMISSION_FILE, submission_id=submission_id)
    return claim_ids, notification_ids, submission_ids


@transaction.atomic
def claims_for_found_users(*, incident: Incident, actor: str) -> int:
    """Users the engine found owed something who never wrote in: a claim on their behalf, linked
    to their items, and an e-mail telling them what was found and how to see it. Idempotent."""

    claimants = set(Claim.objects.filter(incident=incident).values_list("user_id", flat=True))
    owed = (
        Item.objects.filter(incident=incident)
        .exclude(status=Item.Status.REJECTED)
        .exclude(user_id__in=claimants)
        .order_by("user_id", "id")
    )
    by_user: dict[int, list[Item]] = {}
    for item in owed:
        by_user.setdefault(item.user_id, []).append(item)
    for user_id, items in by_user.items():
        account = ledger.account_get(user_id)
        claim = Claim.objects.create(
            incident=incident,
            user_id=user_id,
            channel=Claim.Channel.STAFF,
            kind="other",
            status="",
            description="found by the review of the ledger",
            language=_language_of(account),
        )
        claim_transition(
            claim=claim, to=Claim.Status.MATCHED, actor=actor, reason=f"found by detection: {len(items)} item(s)"
        )
        ClaimItem.objects.bulk_create([ClaimItem(claim=claim, item=item) for item in items])
        notify(key=f"incident:{incident.id}:found:{user_id}", kind="found", user_id=user_id, claim=claim)
    claims_follow_items(item_ids=[item.id for items in by_user.values() for item in items], actor=Actor(actor))
    return len(by_user)


def _language_of(account) -> str:
    return language_for(account.locale if account else None)


def status_link_send(*, claim: Claim) -> None:
    """A fresh status link, to the address the exchange has on file (one a day per claim: the key
    names the day). The e-mail's own rendering signs the link anew."""
    notify(
        key=f"claim:{claim.id}:status-link:{timezone.now():%Y-%m-%d}",
        kind="status_link",
        user_id=claim.user_id,
        claim=claim,
    )


@transaction.atomic
def claims_assign(*, claim_ids, actor: Actor, to=None) -> list:
    """Assign claims to a staff member (`to`; None: unassigned), each change recorded. Anyone with
    an approving role may take a claim or hand it on; the person it goes to must hold one too."""
    from .approvals import Outcome  # approvals imports this module

    actor.require(APPROVING_ROLES, "assign claims")
    if to is not None and not roles_of(to) & APPROVING_ROLES:
        raise Refused(f"{to.get_username()} holds no role that reviews claims", rule="role")
    claims = list(Claim.objects.select_for_update().filter(id__in=list(claim_ids)).order_by("id"))
    names = dict(
        get_user_model()
        .objects.filter(id__in={c.assigned_to_id for c in claims} - {None})
        .values_list("id", "username")
    )
    outcomes, records = [], []
    for claim in claims:
        if claim.assigned_to_id == (to.pk if to else None):
            outcomes.append(Outcome(claim.id, False, f"already assigned to {to.get_username() if to else 'nobody'}"))
            continue
        records.append(
            audit_entry(
                actor=actor.name,
                object_type="claim",
                object_id=claim.id,
                action="assigned",
                before={"status": claim.status, "assigned_to": names.get(claim.assigned_to_id)},
                after={"status": claim.status, "assigned_to": to.get_username() if to else None},
            )
        )
        outcomes.append(Outcome(claim.id, True, "assigned"))
    changed = [o.item_id for o in outcomes if o.changed]
    Claim.objects.filter(id__in=changed).update(assigned_to=to, updated_at=timezone.now())
    audit_write(records)
    return outcomes


def claimant_actor(user_id: int) -> str:
    return f"claimant {user_id}"


# --- claims follow their items (payouts.md) ---

FOLLOWING = (
    Claim.Status.MATCHED,
    Claim.Status.UNMATCHED,
    Claim.Status.NO_LOSS,
    Claim.Status.IN_REVIEW,
    Claim.Status.APPROVED,
    Claim.Status.REJECTED,
    Claim.Status.PAID,
)
DECIDED = (Claim.Status.APPROVED, Claim.Status.REJECTED, Claim.Status.PAID)


def claim_status_from_items(current: str, item_statuses: list[str]) -> str:
    """A claim is rejected when all its items are, paid when each is paid or rejected and one is
    paid, approved when each is decided; a decided claim whose item went back to undecided is
    in review again. Without items, the claim's own status stands (a staff decision)."""
    if current not in FOLLOWING or not item_statuses:
        return current
    statuses = set(item_statuses)
    if statuses == {Item.Status.REJECTED}:
        return Claim.Status.REJECTED
    if statuses <= {Item.Status.PAID, Item.Status.REJECTED}:
        return Claim.Status.PAID
    if statuses <= {Item.Status.APPROVED, Item.Status.PAID, Item.Status.REJECTED}:
        return Claim.Status.APPROVED
    return Claim.Status.IN_REVIEW if current in DECIDED else current


def claims_follow_items(*, item_ids, actor: Actor) -> list[int]:
    """Bring the claims linked to these items in line with them, and tell each claimant once per
    step. Callers hold the items' row locks; the claims are locked here, after them (the order
    every writer keeps: items, then claims). Returns the ids of the claims that moved."""
    claim_ids = set(ClaimItem.objects.filter(item_id__in=list(item_ids)).values_list("claim_id", flat=True))
    if not claim_ids:
        return []
    claims = list(Claim.objects.select_for_update(of=("self",)).filter(id__in=claim_ids).order_by("id"))
    items_of = defaultdict(list)
    for claim_id, status, asset, amount in ClaimItem.objects.filter(claim_id__in=claim_ids).values_list(
        "claim_id", "item__status", "item__asset", "item__amount"
    ):
        items_of[claim_id].append((status, asset, amount))
    records, moved, now = [], defaultdict(list), timezone.now()
    for claim in claims:
        target = claim_status_from_items(claim.status, [status for status, _, _ in items_of[claim.id]])
        if target != claim.status:
            records.append(
                audit_entry(
                    actor=actor.name,
                    object_type="claim",
                    object_id=claim.id,
                    action="status",
                    before={"status": claim.status},
                    after={"status": target},
                    at=now,
                    reason="follows its items",
                )
            )
            claim.status = target
            moved[target].append(claim)
    for target, changed in moved.items():
        Claim.objects.filter(id__in=[c.id for c in changed]).update(status=target, updated_at=now)
    audit_write(records)
    _decisions_notify(moved, items_of)
    return [claim.id for changed in moved.values() for claim in changed]


def _decisions_notify(moved: dict[str, list[Claim]], items_of: dict) -> None:
    messages = []
    for target, changed in moved.items():
        for claim in changed:
            if target in (Claim.Status.APPROVED, Claim.Status.REJECTED):
                messages.append((f"claim:{claim.id}:decision:{target}", "decision", claim, {"decision": target}))
            elif target == Claim.Status.PAID:
                messages.append(
                    (f"claim:{claim.id}:payout", "payout", claim, {"amounts": _paid_amounts(items_of[claim.id])})
                )
    notify_many(messages)


def _paid_amounts(items: list[tuple]) -> list[dict]:
    decimals = ledger.asset_decimals()
    totals = defaultdict(lambda: 0)
    for status, asset, amount in items:
        if status == Item.Status.PAID:
            totals[asset] += amount
    return [
        {"asset": asset, "amount": f"{quantize(total, decimals.get(asset, 18)):f}"}
        for asset, total in sorted(totals.items())
    ]
