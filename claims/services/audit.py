"""The audit trail (audit.md): writing records, sealing them into a SHA-256 chain, verifying it.

Writers only insert records. The sealer links them afterwards, in id order: each record's hash
is SHA-256 over the previous record's hash (64 hex digits; 64 zeros before the first record)
followed by the record's canonical encoding. So filing a claim or approving 100,000 items never
waits on the chain, and the chain still proves that no sealed record was altered, removed or
reordered.
"""

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from ..models import AuditHash, AuditRecord, AuditSeal

GENESIS = "0" * 64
AUDIT_WRITER_LOCK = 4242001  # taken (shared) by claims_audit_next_id(): see migration 0006
SEALER_LOCK = 4242002
RECORD_FIELDS = ("id", "at", "actor", "object_type", "object_id", "action", "before", "after", "reason")
BATCH = 10000
# What an item's records keep of it before and after a change.
ITEM_STATE = ("status", "amount", "version", "approval", "amount_set_by")


# --- writing ---


def audit_value(value):
    """A value as the trail keeps it: decimals as strings (every significant digit, no exponent, no
    trailing zeros: 62.243932 read from a column of 18 decimals is 62.243932), times in ISO-8601 UTC."""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value else "0"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): audit_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [audit_value(v) for v in value]
    return value


def audit_values(instance, fields: Iterable[str]) -> dict:
    return {name: audit_value(getattr(instance, name)) for name in fields}


def audit_entry(
    *,
    actor: str,
    object_type: str,
    object_id: int,
    action: str,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> AuditRecord:
    """An unsaved record, for audit_write (several at once)."""
    return AuditRecord(
        at=at or timezone.now(),
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        action=action,
        before=audit_value(before),
        after=audit_value(after),
        reason=reason,
    )


def item_entry(item, *, actor: str, action: str, before: dict | None, reason: str = "", at=None) -> AuditRecord:
    """An unsaved record of a change to an item, its state after read from the item as it is now."""
    return audit_entry(
        actor=actor,
        object_type="item",
        object_id=item.id,
        action=action,
        before=before,
        after=audit_values(item, ITEM_STATE),
        reason=reason,
        at=at,
    )


def audit_write(records: list[AuditRecord]) -> None:
    AuditRecord.objects.bulk_create(records, batch_size=5000)


def audit_record(**fields) -> AuditRecord:
    record = audit_entry(**fields)
    audit_write([record])
    return record


def audit_history(*, object_type: str, object_id: int):
    return AuditRecord.objects.filter(object_type=object_type, object_id=object_id).order_by("id")


# --- the chain ---


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def canonical(row: tuple) -> bytes:
    """A record's canonical encoding: UTF-8 JSON, keys sorted, no whitespace."""
    values = dict(zip(RECORD_FIELDS, row, strict=True))
    values["at"] = iso(values["at"])
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=audit_value).encode()


def chain_hash(previous: str, row: tuple) -> str:
    return hashlib.sha256(previous.encode() + canonical(row)).hexdigest()


def _rows(*, after_id: int, up_to: int | None) -> Iterator[tuple]:
    records = AuditRecord.objects.filter(id__gt=after_id).order_by("id")
    if up_to is not None:
        records = records.filter(id__lte=up_to)
    return records.values_list(*RECORD_FIELDS).iterator(chunk_size=BATCH)


@dataclass
class Sealed:
    seal: AuditSeal | None
    waiting: bool = False  # a writer still held records below the horizon when the wait ran out


def audit_seal(*, wait_seconds: float = 10.0) -> Sealed:
    """Chain every record above the last seal up to the highest id below which every record that
    will ever commit has committed. One sealer at a time; sealing twice seals nothing new."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEALER_LOCK])
                if not cursor.fetchone()[0]:
                    return Sealed(None)  # another sealer is at work
            horizon = _pg_horizon(wait_seconds)
            if horizon is None:
                return Sealed(None, waiting=True)
        else:
            horizon = None  # SQLite has one writer at a time: ids commit in order
        last = AuditSeal.objects.order_by("-id").first()
        return Sealed(_seal_after(last, horizon))


def _pg_horizon(wait_seconds: float) -> int | None:
    """Every id up to the sequence's last value was taken by a transaction that took the shared
    writer lock first (claims_audit_next_id) and holds it until it ends. So once the holders seen
    after reading that value have all ended, every record up to it is committed or never will be.
    Only those transactions are waited for; a writer never waits for anyone."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM claims_auditrecord_id_seq"
        )
        horizon = cursor.fetchone()[0]
        holders = _writer_holders(cursor, None)
        deadline = time.monotonic() + wait_seconds
        while holders:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
            holders = _writer_holders(cursor, holders)
    return horizon


def _writer_holders(cursor, among: list[str] | None) -> list[str]:
    sql = (
        "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %s "
        "AND objsubid = 1 AND granted AND pid <> pg_backend_pid()"
    )
    params: list = [AUDIT_WRITER_LOCK]
    if among is not None:
        sql += " AND virtualtransaction = ANY(%s)"
        params.append(among)
    cursor.execute(sql, params)
    return [row[0] for row in cursor.fetchall()]


def _seal_after(last: AuditSeal | None, horizon: int | None) -> AuditSeal | None:
    previous, position = (last.last_hash, last.total_records) if last else (GENESIS, 0)
    first_id = last_id = None
    hashes: list[AuditHash] = []
    for row in _rows(after_id=last.last_record_id if last else 0, up_to=horizon):
        previous, position = chain_hash(previous, row), position + 1
        hashes.append(AuditHash(record_id=row[0], position=position, hash=previous))
        first_id, last_id = first_id or row[0], row[0]
        if len(hashes) >= BATCH:
            AuditHash.objects.bulk_create(hashes)
            hashes = []
    if last_id is None:
        return None
    AuditHash.objects.bulk_create(hashes)
    return AuditSeal.objects.create(
        first_record_id=first_id,
        last_record_id=last_id,
        last_hash=previous,
        records=position - (last.total_records if last else 0),
        total_records=position,
    )


# --- verification ---


@dataclass
class Verified:
    records: int
    problem: str | None = None  # "record 4711: altered"
    unsealed: int = 0

    @property
    def intact(self) -> bool:
        return self.problem is None


def audit_verify() -> Verified:
    """Seal what is new, then recompute every hash from the first record and compare it with the
    hashes and seals stored. Names the first record altered, removed or reordered."""
    audit_seal()
    seals = list(AuditSeal.objects.order_by("id").values_list("last_record_id", "last_hash", "total_records"))
    if not seals:
        return Verified(0, unsealed=AuditRecord.objects.count())
    end = seals[-1][0]
    checker = _ChainChecker({last_id: (digest, total) for last_id, digest, total in seals})
    problem = checker.walk(_rows(after_id=0, up_to=end), _hash_rows(end))
    if problem is None:
        problem = checker.seals_all_reached(end)
    return Verified(checker.position, problem, unsealed=AuditRecord.objects.filter(id__gt=end).count())


def _hash_rows(end: int) -> Iterator[tuple]:
    return (
        AuditHash.objects.filter(record_id__lte=end)
        .order_by("record_id")
        .values_list("record_id", "position", "hash")
        .iterator(chunk_size=BATCH)
    )


class _ChainChecker:
    def __init__(self, seals: dict[int, tuple[str, int]]):
        self.seals = seals
        self.previous, self.position = GENESIS, 0
        self.seals_seen: set[int] = set()

    def walk(self, records: Iterator[tuple], hashes: Iterator[tuple]) -> str | None:
        record, stored = next(records, None), next(hashes, None)
        while record is not None or stored is not None:
            if stored is None or (record is not None and record[0] < stored[0]):
                return f"record {record[0]}: inserted after it was sealed"
            if record is None or stored[0] < record[0]:
                return f"record {stored[0]}: removed"
            problem = self._check(record, stored, hashes)
            if problem:
                return problem
            record, stored = next(records, None), next(hashes, None)
        return None

    def _check(self, record: tuple, stored: tuple, hashes: Iterator[tuple]) -> str | None:
        record_id, position, digest = stored
        if position != self.position + 1:
            return f"record {record_id}: {position - self.position - 1} record(s) before it removed"
        if chain_hash(self.previous, record) != digest:
            return f"record {record_id}: {_altered_or_reordered(record, digest, hashes)}"
        self.previous, self.position = digest, position
        if record_id in self.seals:
            self.seals_seen.add(record_id)
            if self.seals[record_id] != (digest, position):
                return f"record {record_id}: its seal does not match the chain"
        return None

    def seals_all_reached(self, end: int) -> str | None:
        missing = sorted(set(self.seals) - self.seals_seen)
        return f"record {missing[0]}: removed (a seal names it)" if missing else None


def _altered_or_reordered(record: tuple, digest: str, hashes: Iterator[tuple]) -> str:
    """Reordered if this record's content is what one of the next sealed records held: that
    content, under that record's id and after its predecessor's stored hash, gives its stored
    hash. Otherwise altered."""
    previous = digest
    for _ in range(64):
        stored = next(hashes, None)
        if stored is None:
            break
        if chain_hash(previous, (stored[0], *record[1:])) == stored[2]:
            return "reordered"
        previous = stored[2]
    return "altered"
