"""E-mail intake's writes (email-intake.md): every message received is kept exactly as it came,
then given exactly one outcome.

Both ways in (the ESPs' webhooks, `import_mailbox`) call `inbound_store`, which keeps the raw
bytes and enqueues the intake task; the task calls `inbound_parse`, which reads the message with
the pure layer (claims/inbound) and decides its outcome, in the spec's order:

    duplicate, ignored, unparseable_kept, reply, new_claim, unverified, no_account

and does what the outcome asks (a claim, information added to one, a verification link to the
address on file, one answer to an unknown sender). Whatever goes wrong while deciding, the
message is kept as `unparseable_kept` with what its headers tell: never lost, never retried
forever (MAX_ATTEMPTS). A message that names earlier ones (the original it repeats, the message
it answers) is decided after them, whatever order the workers take them in.
"""

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from exchange import selectors as ledger

from .. import queue
from ..inbound import DSN, Extracted, Parsed, extract, ignored_reason, parse, peek_message_id, sender_verified
from ..models import Claim, InboundMessage, Incident, Notification
from ..models.claims import EXTENSIONS
from ..notifications import Thread, language_for, notify
from ..roles import APPROVING_ROLES, Actor
from .audit import audit_record
from .claims import (
    MAX_ATTACHMENT_BYTES,
    ClaimRefused,
    attachment_content_type,
    claim_add_information,
    claim_create,
    claimant_actor,
)

Outcome = InboundMessage.Outcome
INTAKE_ACTOR = "e-mail intake"  # the audit trail's actor for a claim whose sender is not verified
MAX_ATTEMPTS = 5  # deliveries of the intake task before a message is kept as it is
EARLIER_DEPTH = 20  # how many earlier messages a message may wait for, through their own earlier ones
NO_ACCOUNT_INTERVAL = timedelta(hours=24)
BIGINT_MAX = 2**63 - 1
HEADER_END = re.compile(rb"(?:\A|\n)\r?\n")


# --- storing -----------------------------------------------------------------------------------


def message_key(message_id: str | None, sha256: str) -> str:
    """How a message is found again: by its Message-ID, or, having none, by its exact bytes."""
    basis = f"id:{message_id}" if message_id is not None else f"raw:{sha256}"
    return hashlib.sha256(basis.encode("utf-8", "backslashreplace")).hexdigest()


def _text(value: str | None) -> str | None:
    """A value from a request or a file name, fit for a text column (PostgreSQL refuses NUL)."""
    return None if value is None else value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


@transaction.atomic
def inbound_store(
    *,
    raw: bytes,
    source: str,
    esp: str = "",
    mailbox: str = "",
    place: str = "",
    envelope_sender: str | None = None,
    incident: Incident | None = None,
) -> tuple[InboundMessage, bool]:
    """Keep one message exactly as received and enqueue its parsing: (the message, whether it is
    new). A place received before (a mailbox's file or message, an ESP's event) is not received
    again; the same bytes from another place are a new receipt."""
    where = _text(esp or mailbox)
    place_key = hashlib.sha256(f"{source}\n{where}\n{_text(place)}".encode()).hexdigest() if place else None
    if place_key is not None:
        known = InboundMessage.objects.filter(place_key=place_key).only("id", "outcome").first()
        if known is not None:
            return known, False
    sha256 = hashlib.sha256(raw).hexdigest()
    message = InboundMessage.objects.create(
        raw=raw,
        sha256=sha256,
        size=len(raw),
        source=source,
        esp=_text(esp),
        mailbox=_text(mailbox),
        place=_text(place),
        place_key=place_key,
        envelope_sender=_text(envelope_sender),
        incident=incident,
        message_key=message_key(peek_message_id(raw), sha256),
    )
    # The callback keeps the id, not the bytes, until the commit.
    queue.enqueue_on_commit(queue.INBOUND_PARSE, message_id=message.id)
    return message, True


def incident_open_for_claims() -> Incident | None:
    """The incident a webhook's message is for: the one open for claims; of several, the newest."""
    return Incident.objects.filter(claims_close__gte=timezone.now()).order_by("-window_start", "-id").first()


# --- deciding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sender:
    address: str | None
    verified: bool
    account: object | None  # the one account whose address on file is From's


def inbound_parse(*, message_id: int, depth: int = 0) -> str | None:
    """Give a stored message its outcome; None if it has one already (a repeated delivery)."""
    message = _attempt_take(message_id)
    if message is None:
        return None
    raw = bytes(message.raw)
    if message.attempts > MAX_ATTEMPTS:  # it kept failing, or kept killing its worker
        return _keep(message_id=message_id, raw=raw, problem=f"given up after {MAX_ATTEMPTS} attempts")
    try:
        parsed = parse(raw)
        key = message_key(parsed.message_id, message.sha256)
        related = _earlier_first(message_id, [key, *(message_key(i, "") for i in parsed.thread_ids)], depth)
        return _decide(message_id=message_id, parsed=parsed, key=key, related=related)
    except (OperationalError, IntegrityError) as exc:
        if message.attempts < MAX_ATTEMPTS:
            raise  # the task retries: a lost connection, or a copy decided at the same moment
        return _keep(message_id=message_id, raw=raw, problem=f"the intake failed: {type(exc).__name__}: {exc}")
    except Exception as exc:  # the contract: kept, whatever went wrong
        return _keep(message_id=message_id, raw=raw, problem=f"the intake failed: {type(exc).__name__}: {exc}")


TAKE_SQL = (
    f"UPDATE {InboundMessage._meta.db_table} SET attempts = attempts + 1 WHERE id = %s AND outcome IS NULL "
    "RETURNING attempts, sha256, raw"
)


def _attempt_take(message_id: int) -> InboundMessage | None:
    """Take an undecided message for this delivery, counting the attempt in a commit of its own
    (one whose worker is killed while deciding has still used it up), in one statement that also
    reads it. Losing the count in a crash of the database itself costs one more attempt at most,
    so on PostgreSQL this commit does not wait for the disk."""
    own_commit = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if own_commit and connection.vendor == "postgresql":
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(TAKE_SQL, [message_id])
        row = cursor.fetchone()
    return None if row is None else InboundMessage(id=message_id, attempts=row[0], sha256=row[1], raw=row[2])


RELATED = ("id", "message_key", "outcome", "original_key", "user_id", "claim_id")


def _related(message_id: int, keys: list[str]) -> list[dict]:
    """The other messages with this one's key (its copies) or the key of a message it answers."""
    return list(
        InboundMessage.objects.filter(message_key__in=keys).exclude(id=message_id).order_by("id").values(*RELATED)
    )


def _earlier_first(message_id: int, keys: list[str], depth: int) -> list[dict]:
    """The related messages, after deciding first the earlier ones not decided yet (another worker
    has them, or has not started): the original it may repeat, the messages it answers."""
    related = _related(message_id, keys)
    earlier = [row["id"] for row in related if row["id"] < message_id and row["outcome"] is None]
    if not earlier or depth >= EARLIER_DEPTH:
        return related
    for earlier_id in earlier:
        inbound_parse(message_id=earlier_id, depth=depth + 1)
    return _related(message_id, keys)


@transaction.atomic
def _decide(*, message_id: int, parsed: Parsed, key: str, related: list[dict]) -> str | None:
    message = (
        InboundMessage.objects.select_for_update(of=("self",))
        .select_related("incident")
        .defer("raw")
        .get(id=message_id)
    )
    if message.outcome:
        return None  # decided while this task waited for the lock
    found = extract(parsed.text, *_markets_and_assets())
    sender = _sender(parsed)
    fields = (
        _as_duplicate(key, related)
        or _as_ignored(message, parsed)
        or _as_unparseable(parsed, sender)
        or _as_reply(message, parsed, sender, related)
        or _as_claim(message, parsed, found, sender)
        or _as_no_account(parsed)
    )
    if fields["outcome"] != Outcome.DUPLICATE:
        fields["original_key"] = key
    _record(message_id, _read(parsed, found, key), fields, sender)
    return fields["outcome"]


KNOWN_SECONDS = 5.0
_known: dict = {}


def _markets_and_assets() -> tuple[frozenset[str], frozenset[str]]:
    """The ledger's market symbols and assets, read again after another import (looked for at
    most every KNOWN_SECONDS: a backlog is parsed at hundreds of messages a second)."""
    now = time.monotonic()
    if _known.get("until", 0.0) < now:
        marker = ledger.latest_import_marker()
        if _known.get("marker") != marker or "markets" not in _known:
            _known.update(
                marker=marker,
                markets=frozenset(m.symbol for m in ledger.markets_list()),
                assets=frozenset(ledger.asset_decimals()),
            )
        _known["until"] = now + KNOWN_SECONDS
    return _known["markets"], _known["assets"]


def forget_markets() -> None:
    _known.clear()


def _record(message_id: int, read: dict, fields: dict, sender: Sender) -> None:
    """Write what was read and decided; never the raw bytes (an UPDATE naming them is refused)."""
    problems = read.pop("problems") + fields.pop("problems", [])
    InboundMessage.objects.filter(id=message_id).update(
        **read, **fields, problems=problems, is_verified=sender.verified
    )


def _read(parsed: Parsed, found: Extracted, key: str) -> dict:
    """What was read from the message, whatever its outcome."""
    return {
        "parsed_at": timezone.now(),
        "message_key": key,
        "message_id": parsed.message_id,
        "thread_ids": list(parsed.thread_ids),
        "from_address": parsed.from_address or "",
        "from_name": parsed.from_name,
        "subject": parsed.subject,
        "text": parsed.text,
        "extracted": {**found.export(), "userIds": list(found.user_ids)},
        "attachments": [
            {
                **a.export(),
                "sha256": hashlib.sha256(a.content).hexdigest(),
                "isInline": a.is_inline,
                "isBroken": a.is_broken,
            }
            for a in parsed.attachments
        ],
        "problems": list(parsed.problems),
    }


def _sender(parsed: Parsed) -> Sender:
    """Who sent it: the From address only, verified by our own server's verdict."""
    address = parsed.from_address
    accounts = ledger.accounts_with_email(address) if address else []
    return Sender(
        address, sender_verified(parsed, settings.INBOUND_AUTHSERV_ID), accounts[0] if len(accounts) == 1 else None
    )


def _as_duplicate(key: str, related: list[dict]) -> dict | None:
    """The same Message-ID (or, without one, the same bytes) stored before: the message holding the
    key. Earlier copies were decided first (_earlier_first), so the original holds it by now; one
    decided since it was read makes this decision fail on the unique key, and the retry finds it."""
    original = next((row for row in related if row["original_key"] == key), None)
    if original is None:
        return None
    return {
        "outcome": Outcome.DUPLICATE,
        "duplicate_of_id": original["id"],
        "user_id": original["user_id"],
        "claim_id": original["claim_id"],
    }


def _as_ignored(message: InboundMessage, parsed: Parsed) -> dict | None:
    # An ESP reports the envelope sender beside the message; empty, it is a bounce (Return-Path: <>).
    reason = ignored_reason(parsed) or (DSN if message.envelope_sender == "" else None)
    return {"outcome": Outcome.IGNORED, "ignored_reason": reason} if reason else None


def _as_unparseable(parsed: Parsed, sender: Sender) -> dict | None:
    if parsed.is_parseable:
        return None
    return {"outcome": Outcome.UNPARSEABLE_KEPT, "user_id": _verified_user(sender)}


def _verified_user(sender: Sender) -> int | None:
    return sender.account.user_id if sender.verified and sender.account else None


def _as_reply(message: InboundMessage, parsed: Parsed, sender: Sender, related: list[dict]) -> dict | None:
    """It answers a message of a claim of the sender's own account: its new text and files are
    added there. Threaded into another account's claim, it is judged on its own."""
    if not (sender.verified and sender.account and parsed.thread_ids):
        return None
    claim = _thread_claim(parsed.thread_ids, before=message.id, user_id=sender.account.user_id, related=related)
    if claim is None:
        return None
    claim_add_information(
        claim=claim, text=parsed.text, attachments=[], stored=_claim_files(parsed), actor=claimant_actor(claim.user_id)
    )
    return {"outcome": Outcome.REPLY, "user_id": claim.user_id, "claim_id": claim.id}


def _thread_claim(thread_ids: tuple[str, ...], *, before: int, user_id: int, related: list[dict]) -> Claim | None:
    """The first claim of `user_id` that a message of the thread belongs to: a message received
    before (directly or through earlier replies, which belong to it too) or one we sent about it."""
    keys = {message_key(i, ""): i for i in thread_ids}
    claim_of = {
        keys[row["message_key"]]: row["claim_id"]
        for row in related
        if row["id"] < before and row["claim_id"] is not None and row["message_key"] in keys
    }
    for sent_id, claim_id in Notification.objects.filter(
        message_id__in=[i[:255] for i in thread_ids], claim__isnull=False
    ).values_list("message_id", "claim_id"):
        claim_of.setdefault(sent_id, claim_id)
    claims = Claim.objects.in_bulk(claim_of.values())
    for thread_id in thread_ids:
        claim = claims.get(claim_of.get(thread_id))
        while claim is not None and claim.merged_into_id is not None:  # a merged claim lives on in the first
            claim = Claim.objects.get(id=claim.merged_into_id)
        if claim is not None and claim.user_id == user_id:
            return claim
    return None


def _as_claim(message: InboundMessage, parsed: Parsed, found: Extracted, sender: Sender) -> dict | None:
    """new_claim for a verified account; unverified for an account's address not verified, or for
    an unknown sender naming an existing userId (the link then goes to the address on file)."""
    verified = sender.verified and sender.account is not None
    account = sender.account or (ledger.account_get(found.named_user_id) if found.named_user_id else None)
    if account is None:
        return None
    fields = {"outcome": Outcome.NEW_CLAIM if verified else Outcome.UNVERIFIED, "user_id": account.user_id}
    incident = message.incident or incident_open_for_claims()
    if incident is None:
        return {**fields, "problems": ["no claim filed: no incident is open for claims"]}
    try:
        claim = _claim_file(incident, account, parsed, found, verified=verified)
    except ClaimRefused as exc:
        return {**fields, "incident": incident, "problems": [f"no claim filed: {exc}"]}
    return {**fields, "incident": incident, "claim_id": claim.id}


def _claim_file(incident: Incident, account, parsed: Parsed, found: Extracted, *, verified: bool) -> Claim:
    claim = claim_create(
        incident=incident,
        user_id=account.user_id,
        channel=Claim.Channel.EMAIL,
        kind=found.kind or "other",
        description=_description(parsed),
        references=claim_references(found),
        language=language_for(account.locale),
        stored=_claim_files(parsed),
        verified=verified,
        account=account,
        actor=claimant_actor(account.user_id) if verified else INTAKE_ACTOR,
    )
    if verified:
        # The acknowledgement answers their e-mail, threaded under it; matching finds it queued
        # (same key) and sends no second one.
        notify(
            key=f"claim:{claim.id}:acknowledgement",
            kind="acknowledgement",
            user_id=claim.user_id,
            claim=claim,
            account=account,
            new_key=True,
            thread=_thread(parsed, f"[{claim_reference(claim)}]"),
        )
    return claim


def claim_reference(claim: Claim) -> str:
    """The claim's reference in answers' subjects: short, and not a count of claims."""
    return f"claim {claim.public_id.hex[:12]}"


def claim_references(found: Extracted) -> dict:
    """A claim holds one of each reference: the first the text gives (the message keeps them all)."""
    references = {
        "trade_id": next((i for i in found.trade_ids if i <= BIGINT_MAX), None),
        "order_id": next((i for i in found.order_ids if len(i) <= 64), None),
        "withdrawal_id": next((i for i in found.withdrawal_ids if i <= BIGINT_MAX), None),
        "transaction_hash": next((h for h in found.tx_hashes if len(h) <= 200), None),
        "market_symbol": next(iter(found.symbols), None),
    }
    amount = next(((Decimal(value), asset) for value, asset in found.amounts if _fits(value)), None)
    if amount is not None:
        references["claimed_amount"], references["claimed_asset"] = amount[0], amount[1][:32]
    return {name: value for name, value in references.items() if value is not None}


def _fits(value: str) -> bool:
    """An amount a claim can hold (38 digits, 18 after the point) exactly as written."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return False
    return number.is_finite() and abs(number) < Decimal(10) ** 20 and number.as_tuple().exponent >= -18


def _description(parsed: Parsed) -> str:
    return f"{parsed.subject}\n\n{parsed.text}".strip() if parsed.subject else parsed.text


def _claim_files(parsed: Parsed) -> list[dict]:
    """The attachments a claim shows (PNG, JPEG, PDF by their content, up to 10 MB, as for the web
    form), written to storage under a name of their detected type; every attachment, whatever its
    type, stays in the message's raw bytes and is listed on it for staff."""
    stored = []
    for attachment in parsed.attachments:
        content_type = attachment_content_type(attachment.content[:8])
        if attachment.is_broken or content_type is None or attachment.size > MAX_ATTACHMENT_BYTES:
            continue
        path = default_storage.save(
            f"claims/email/{uuid.uuid4().hex}{EXTENSIONS[content_type]}", ContentFile(attachment.content)
        )
        stored.append(
            {
                "path": path,
                "name": (attachment.filename or f"attachment{EXTENSIONS[content_type]}")[:255],
                "content_type": content_type,
                "size": attachment.size,
                "sha256": hashlib.sha256(attachment.content).hexdigest(),
            }
        )
    return stored


def _thread(parsed: Parsed, prefix: str) -> Thread:
    """An answer threaded under the message; its subject says which claim and echoes theirs
    (header-safe: Thread makes every value so)."""
    subject = f"{prefix} Re: {parsed.subject[:150]}" if parsed.subject else prefix
    return Thread(in_reply_to=parsed.message_id, references=parsed.references, subject_suffix=subject.strip())


def _as_no_account(parsed: Parsed) -> dict:
    _no_account_answer(parsed)
    return {"outcome": Outcome.NO_ACCOUNT}


ANSWERABLE = re.compile(r"[^\s@<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9.-]{1,253}\Z")


def _no_account_answer(parsed: Parsed) -> None:
    """One polite answer to the From address asking for the account id, at most once a day per
    address (a day: the calendar day in the key, and 24 hours since the last answer)."""
    address = parsed.from_address
    if not address or not ANSWERABLE.match(address):
        return  # no address, or one we could not write to safely
    now = timezone.now()
    if Notification.objects.filter(kind="no_account", to=address, created_at__gte=now - NO_ACCOUNT_INTERVAL).exists():
        return
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    notify(
        key=f"inbound:no-account:{digest}:{now:%Y-%m-%d}",
        kind="no_account",
        user_id=None,
        to=address,
        language=language_guess(f"{parsed.subject}\n{parsed.text}"),
        context={"subject": parsed.subject[:200], "support_email": settings.SUPPORT_EMAIL},
        thread=_thread(parsed, ""),
    )


CJK = re.compile(r"[\u3400-\u9fff]")
PORTUGUESE = re.compile(r"[ãõç]|\b(?:não|nao|minha|meu|conta|você|obrigad[oa]|saque|olá|por favor)\b", re.I)


def language_guess(text: str) -> str:
    """The language to answer an unknown sender in, from their own words."""
    if CJK.search(text):
        return "zh-hans"
    return "pt-br" if PORTUGUESE.search(text) else "en"


@transaction.atomic
def _keep(*, message_id: int, raw: bytes, problem: str) -> str | None:
    """Keep a message the intake could not decide as `unparseable_kept`, with what its header
    section tells (sender, subject): that much is read without its body."""
    message = InboundMessage.objects.select_for_update().defer("raw").get(id=message_id)
    if message.outcome:
        return None
    found = HEADER_END.search(raw)
    known = parse(raw[: found.end()] if found else raw[:65536])
    sender = _sender(known)
    key = message_key(known.message_id, message.sha256)
    fields = {"outcome": Outcome.UNPARSEABLE_KEPT, "user_id": _verified_user(sender), "problems": [problem]}
    if not InboundMessage.objects.filter(original_key=key).exists():
        fields["original_key"] = key
    _record(message_id, _read(known, extract("", []), key), fields, sender)
    return Outcome.UNPARSEABLE_KEPT


# --- staff -------------------------------------------------------------------------------------

AGAIN = (Outcome.UNPARSEABLE_KEPT,)


@transaction.atomic
def inbound_parse_again(*, message_ids, actor: Actor) -> list[int]:
    """Parse again messages kept as `unparseable_kept` (after a fix of the parser; support or
    approver): what was read from them is forgotten and the intake task decides them anew. The
    raw bytes are untouched; other outcomes have already done what they had to (a claim, an
    answer) and are left alone. Returns the ids enqueued."""
    actor.require(APPROVING_ROLES, "parse messages again")
    ids = list(
        InboundMessage.objects.select_for_update()
        .filter(id__in=list(message_ids), outcome__in=AGAIN)
        .order_by("id")
        .values_list("id", flat=True)
    )
    InboundMessage.objects.filter(id__in=ids).update(
        outcome=None, attempts=0, parsed_at=None, original_key=None, is_verified=None, user_id=None, problems=[]
    )
    for message_id in ids:
        audit_record(
            actor=actor.name,
            object_type="inbound_message",
            object_id=message_id,
            action="parse_again",
            before={"outcome": Outcome.UNPARSEABLE_KEPT},
            after={"outcome": None},
            reason="parsed again by staff",
        )
    transaction.on_commit(lambda: [queue.enqueue(queue.INBOUND_PARSE, message_id=i) for i in ids])
    return ids


def inbound_requeue(*, older_than: timedelta) -> list[int]:
    """Enqueue again the messages stored longer than `older_than` ago and still undecided: their
    task was lost (a process stopped between commit and publish). Harmless if only late."""
    cutoff = timezone.now() - older_than
    ids = list(
        InboundMessage.objects.filter(outcome__isnull=True, received_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for message_id in ids:
        queue.enqueue(queue.INBOUND_PARSE, message_id=message_id)
    return ids
