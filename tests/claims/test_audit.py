"""The audit trail (audit.md): append-only records, sealed into a SHA-256 chain after the fact."""

import hashlib
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from claims.models import AppendOnlyError, AuditHash, AuditRecord, AuditSeal
from claims.services import audit_record, audit_seal
from claims.services.audit import GENESIS, canonical

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the trigger and row locks are PostgreSQL's"
)


def write(n: int, start: int = 0) -> list[AuditRecord]:
    return [
        audit_record(
            actor="ann",
            object_type="item",
            object_id=start + i,
            action="approved",
            before={"status": "computed", "amount": Decimal("12.500000")},
            after={"status": "approved"},
            reason=f"step {start + i} ✓",
        )
        for i in range(n)
    ]


def verify() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=io.StringIO())
        status = 0
    except SystemExit as exc:
        status = exc.code
    return status, out.getvalue().splitlines()[0]


def raw(sql: str, params=()) -> None:
    """As a database superuser could: with the append-only trigger out of the way."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE claims_auditrecord DISABLE TRIGGER claims_auditrecord_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE claims_auditrecord ENABLE TRIGGER claims_auditrecord_append_only")


def test_an_empty_trail_is_intact():
    assert verify() == (0, "0 records, chain intact")


def test_verify_seals_what_is_new_and_reports_every_record():
    write(5)

    assert verify() == (0, "5 records, chain intact")
    write(2, start=5)
    assert verify() == (0, "7 records, chain intact")
    assert list(AuditSeal.objects.values_list("records", "total_records")) == [(5, 5), (2, 7)]


def test_sealing_twice_seals_nothing_new():
    write(3)
    first = audit_seal()

    second = audit_seal()

    assert first.seal.records == 3 and second.seal is None
    assert AuditHash.objects.count() == 3 and AuditSeal.objects.count() == 1


def test_each_hash_chains_the_previous_one_over_the_canonical_encoding():
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    record = AuditRecord.objects.create(
        at=at,
        actor="policy",
        object_type="item",
        object_id=7,
        action="approved",
        before={"status": "computed"},
        after={"amount": "1.5", "status": "approved"},
        reason="≤ 100",
    )
    audit_seal()

    expected = json.dumps(
        {
            "id": record.id,
            "at": "2026-01-02T03:04:05.000006Z",
            "actor": "policy",
            "object_type": "item",
            "object_id": 7,
            "action": "approved",
            "before": {"status": "computed"},
            "after": {"amount": "1.5", "status": "approved"},
            "reason": "≤ 100",
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    row = AuditRecord.objects.values_list(
        "id", "at", "actor", "object_type", "object_id", "action", "before", "after", "reason"
    ).get()
    assert canonical(row) == expected
    assert AuditHash.objects.get().hash == hashlib.sha256(GENESIS.encode() + expected).hexdigest()
    assert AuditSeal.objects.get().last_hash == AuditHash.objects.get().hash


def test_decimals_are_kept_as_strings_with_every_significant_digit():
    [record] = write(1)

    assert AuditRecord.objects.get(id=record.id).before == {"status": "computed", "amount": "12.5"}


def test_no_code_path_changes_or_deletes_a_record():
    [record] = write(1)

    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.filter(id=record.id).update(reason="edited")
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.filter(id=record.id).delete()
    record.reason = "edited"
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        record.delete()


@on_postgresql
def test_the_database_refuses_to_change_or_delete_a_record_or_a_hash():
    write(1)
    audit_seal()

    for sql in (
        "UPDATE claims_auditrecord SET reason = 'x'",
        "DELETE FROM claims_auditrecord",
        "UPDATE claims_audithash SET hash = 'x'",
        "DELETE FROM claims_auditseal",
    ):
        with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
            cursor.execute(sql)


def test_verify_names_an_altered_record():
    records = write(6)
    audit_seal()

    raw("UPDATE claims_auditrecord SET after = %s WHERE id = %s", ['{"status": "rejected"}', records[3].id])

    assert verify() == (1, f"record {records[3].id}: altered")


def test_verify_names_a_removed_record():
    records = write(6)
    audit_seal()

    raw("DELETE FROM claims_auditrecord WHERE id = %s", [records[2].id])

    assert verify() == (1, f"record {records[2].id}: removed")


def test_verify_names_a_swapped_pair_as_reordered():
    records = write(6)
    audit_seal()
    a, b = records[2].id, records[3].id

    raw("UPDATE claims_auditrecord SET id = -1 WHERE id = %s", [a])
    raw("UPDATE claims_auditrecord SET id = %s WHERE id = %s", [a, b])
    raw("UPDATE claims_auditrecord SET id = %s WHERE id = -1", [b])

    assert verify() == (1, f"record {a}: reordered")


def test_verify_names_the_last_record_removed_with_its_hash():
    records = write(4)
    audit_seal()

    raw("DELETE FROM claims_auditrecord WHERE id = %s", [records[-1].id])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE claims_audithash DISABLE TRIGGER claims_audithash_append_only")
            cursor.execute("DELETE FROM claims_audithash WHERE record_id = %s", [records[-1].id])
            cursor.execute("ALTER TABLE claims_audithash ENABLE TRIGGER claims_audithash_append_only")
    else:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM claims_audithash WHERE record_id = %s", [records[-1].id])

    assert verify() == (1, f"record {records[-1].id}: removed (a seal names it)")


# --- the sealer never makes a writer wait, and waits only for writers ---


def _other_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
    )


def _insert(cursor, object_id: int) -> int:
    cursor.execute(
        "INSERT INTO claims_auditrecord (at, actor, object_type, object_id, action, before, after, reason) "
        "VALUES (now(), 'ann', 'item', %s, 'approved', NULL, NULL, '') RETURNING id",
        [object_id],
    )
    return cursor.fetchone()[0]


@on_postgresql
def test_a_record_committed_after_a_higher_one_is_sealed_in_id_order():
    slow = _other_connection()
    with slow.cursor() as cursor:
        lower = _insert(cursor, 1)  # not committed yet
    [higher] = write(1)
    assert higher.id > lower

    waited = audit_seal(wait_seconds=0.2)
    nothing_sealed = not AuditHash.objects.exists()
    slow.commit()
    slow.close()
    sealed = audit_seal()

    assert waited.waiting and waited.seal is None and nothing_sealed
    assert (sealed.seal.first_record_id, sealed.seal.last_record_id) == (lower, higher.id)
    assert verify() == (0, "2 records, chain intact")


@on_postgresql
def test_a_rolled_back_record_leaves_a_gap_the_sealer_passes():
    aborted = _other_connection()
    with aborted.cursor() as cursor:
        _insert(cursor, 1)
    aborted.rollback()
    aborted.close()
    write(2)

    assert audit_seal().seal.records == 2
    assert verify() == (0, "2 records, chain intact")


@on_postgresql
def test_a_long_transaction_that_writes_no_record_does_not_hold_the_sealer():
    busy = _other_connection()
    with busy.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM claims_item")  # open, and writing no audit record
    write(3)

    sealed = audit_seal(wait_seconds=0.2)

    busy.rollback()
    busy.close()
    assert sealed.seal.records == 3


@on_postgresql
def test_a_writer_never_waits_for_a_sealer_at_work():
    write(2)
    sealer = _other_connection()
    with sealer.cursor() as cursor:  # a sealer holding its lock, mid-run
        cursor.execute("SELECT pg_advisory_xact_lock(4242002)")

    started = datetime.now(UTC)
    write(50, start=2)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    skipped = audit_seal()  # one sealer at a time: this one finds the lock taken and seals nothing

    sealer.rollback()
    sealer.close()
    assert elapsed < 5 and skipped.seal is None
    assert audit_seal().seal.records == 52
