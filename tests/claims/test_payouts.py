"""Payout batches, treasury's files, confirmations, releases and reconciliation (payouts.md)."""

import io
import json
import shutil
import threading
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from claims.models import (
    AuditRecord,
    Claim,
    Incident,
    Item,
    Notification,
    PayoutBatch,
    PayoutConfirmation,
    PayoutLine,
    PayoutLineItem,
)
from claims.roles import Actor, Refused, RoleRefused
from claims.services.payouts import (
    ConfirmationInvalid,
    payout_batch_create,
    payout_files_write,
    payout_line_release,
    payouts_confirm,
    reconcile,
)

from ..conftest import JULY3
from ..factories import INCIDENT_AT, IncidentFactory, StaffFactory

pytestmark = pytest.mark.django_db
T0 = INCIDENT_AT
HEADER = "lineKey,status,transactionId,confirmedAt\n"
AT = "2025-07-10T09:30:00Z"
REFERENCES = count(1)
ENTRY_IDS = count(90_000_001)
U = [100007, 100014, 100021, 100028, 100035, 100042, 100049, 100056, 100063, 100084]  # the sample's accounts


# --- arranging ---


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # staff are made in every test


def ledger_import(folder: Path, entries: list[dict] = ()) -> None:
    """A bundle of the sample's accounts, assets and markets, with these journal entries."""
    folder.mkdir(parents=True)
    for name in ("accounts.jsonl", "assets.jsonl", "markets.jsonl"):
        shutil.copy(JULY3 / "bundle" / name, folder / name)
    if entries:
        (folder / "ledger.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    call_command("import_bundle", str(folder), stdout=io.StringIO())


def credit(key: str | None, user_id: int, symbol: str, quantity: str) -> dict:
    return {
        "id": next(ENTRY_IDS),
        "userId": user_id,
        "symbol": symbol,
        "quantity": quantity,
        "kind": "compensation",
        "timestamp": "2025-07-11T08:00:00.000",
        **({"reference": key} if key is not None else {}),
    }


@pytest.fixture
def incident(tmp_path) -> Incident:
    ledger_import(tmp_path / "ledger")
    return IncidentFactory(slug="pay-july")


def item(
    incident: Incident, user_id: int, asset: str, amount: str, *, status="approved", kind="bad_fill", reference=None
) -> Item:
    """An item as policy approved it (or in another status)."""
    return Item.objects.create(
        incident=incident,
        user_id=user_id,
        kind=kind,
        reference=reference or f"fill:{next(REFERENCES)}:Bid",
        asset=asset,
        amount=None if status == "needs_review" else Decimal(amount),
        status=status,
        approval="two" if status == "needs_review" else "policy",
        formula="test",
        inputs={},
    )


@pytest.fixture
def staff(db) -> SimpleNamespace:
    return SimpleNamespace(
        fin=Actor.person(StaffFactory(username="fin", roles=["finance"])),
        sam=Actor.person(StaffFactory(username="sam", roles=["support"])),
        ava=Actor.person(StaffFactory(username="ava", roles=["approver"])),
        root=Actor.person(StaffFactory(username="root", is_superuser=True)),
    )


def confirmation(*rows: str) -> bytes:
    return (HEADER + "".join(f"{row}\n" for row in rows)).encode()


def confirm(staff, *rows: str):
    return payouts_confirm(content=confirmation(*rows), file_name="treasury.csv", actor=staff.fin)


def state() -> tuple:
    """Everything a payout action may change."""
    return (
        list(PayoutBatch.objects.order_by("id").values_list("id", "number")),
        list(
            PayoutLine.objects.order_by("id").values_list(
                "key", "status", "transaction_id", "confirmed_at", "released_by", "release_reason"
            )
        ),
        list(PayoutLineItem.objects.order_by("id").values_list("line_id", "item_id", "is_holding")),
        list(Item.objects.order_by("id").values_list("id", "status", "version")),
        PayoutConfirmation.objects.count(),
        AuditRecord.objects.count(),
    )


def keys(batch) -> list[str]:
    return list(batch.lines.order_by("number").values_list("key", flat=True))


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- batches ---


def test_a_batch_groups_approved_items_per_user_and_asset_numbered_by_user_id_then_asset(incident, staff):
    paid_together = [item(incident, 10, "USDC", "1.5"), item(incident, 10, "USDC", "2.25")]
    item(incident, 100, "BTC", "0.1")
    item(incident, 9, "USDT", "3")
    item(incident, 10, "BTC", "0.00000001")

    batch = payout_batch_create(incident=incident, actor=staff.fin)

    lines = list(batch.lines.order_by("number").values_list("key", "user_id", "asset", "amount", "status"))
    assert (batch.number, batch.created_by) == (1, "fin")
    assert lines == [
        ("pay-july.1.1", 9, "USDT", Decimal(3), "exported"),
        ("pay-july.1.2", 10, "BTC", Decimal("0.00000001"), "exported"),
        ("pay-july.1.3", 10, "USDC", Decimal("3.75"), "exported"),
        ("pay-july.1.4", 100, "BTC", Decimal("0.1"), "exported"),
    ]
    entries = PayoutLineItem.objects.filter(line__key="pay-july.1.3").order_by("item_id")
    assert [(e.item_id, e.version, e.amount, e.is_holding) for e in entries] == [
        (i.id, 1, i.amount, True) for i in paid_together
    ]


def test_a_batch_takes_only_approved_items_of_its_incident_in_no_live_or_held_line(incident, staff):
    taken = item(incident, 10, "USDC", "5")
    for status in ("computed", "needs_review", "rejected", "paid"):
        item(incident, 11, "USDC", "7", status=status)
    item(IncidentFactory(slug="elsewhere"), 10, "USDC", "9")

    first = payout_batch_create(incident=incident, actor=staff.fin)
    second = payout_batch_create(incident=incident, actor=staff.fin)

    assert list(PayoutLineItem.objects.filter(line__batch=first).values_list("item_id", flat=True)) == [taken.id]
    assert second is None
    assert PayoutBatch.objects.count() == 1


def test_batch_numbers_count_from_one_per_incident_and_keys_are_new(incident, staff):
    other = IncidentFactory(slug="other")
    item(incident, 10, "USDC", "5")
    item(other, 10, "USDC", "5")
    first = payout_batch_create(incident=incident, actor=staff.fin)
    item(incident, 10, "USDC", "6")

    second = payout_batch_create(incident=incident, actor=staff.fin)
    elsewhere = payout_batch_create(incident=other, actor=staff.fin)

    assert [(b.number, keys(b)) for b in (first, second, elsewhere)] == [
        (1, ["pay-july.1.1"]),
        (2, ["pay-july.2.1"]),
        (1, ["other.1.1"]),
    ]


def test_a_batch_of_one_asset_leaves_the_others_for_later(incident, staff):
    item(incident, 10, "USDC", "5")
    btc = item(incident, 10, "BTC", "0.5")

    batch = payout_batch_create(incident=incident, actor=staff.fin, asset="BTC")

    assert (batch.asset, keys(batch)) == ("BTC", ["pay-july.1.1"])
    assert batch.lines.get().entries.get().item_id == btc.id
    assert keys(payout_batch_create(incident=incident, actor=staff.fin)) == ["pay-july.2.1"]


def test_a_batch_of_an_unknown_asset_is_refused(incident, staff):
    item(incident, 10, "USDC", "5")

    with pytest.raises(Refused) as refused:
        payout_batch_create(incident=incident, actor=staff.fin, asset="DOGE")

    assert refused.value.rule == "unknown asset"


def test_no_item_makes_no_batch(incident, staff):
    before = state()

    assert payout_batch_create(incident=incident, actor=staff.fin) is None
    assert state() == before


def test_a_batch_and_its_lines_are_in_the_audit_trail(incident, staff):
    one = item(incident, 10, "USDC", "5")

    batch = payout_batch_create(incident=incident, actor=staff.fin)

    line = batch.lines.get()
    created = AuditRecord.objects.get(object_type="payout_batch", object_id=batch.id)
    exported = AuditRecord.objects.get(object_type="payout_line", object_id=line.id)
    assert (created.actor, created.action, created.after, created.reason) == (
        "fin",
        "created",
        {"incident": "pay-july", "number": 1, "asset": "", "lines": 1},
        "approved items in no live or held line",
    )
    assert (exported.action, exported.reason, exported.after) == (
        "exported",
        "payout batch 1",
        {
            "key": "pay-july.1.1",
            "user_id": 10,
            "asset": "USDC",
            "amount": "5",
            "status": "exported",
            "items": [{"item": one.id, "version": 1, "amount": "5"}],
        },
    )


def test_the_database_keeps_an_item_out_of_two_live_lines(incident, staff):
    one = item(incident, 10, "USDC", "5")
    line = payout_batch_create(incident=incident, actor=staff.fin).lines.get()
    batch = PayoutBatch.objects.create(incident=incident, number=2, created_by="x", created_at=T0)
    other = PayoutLine.objects.create(
        batch=batch, number=1, key="pay-july.2.1", user_id=10, asset="USDC", amount=Decimal(5)
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        PayoutLineItem.objects.create(line=other, item=one, version=1, amount=Decimal(5))

    assert line.entries.get().item_id == one.id


# --- the treasury files ---


@pytest.fixture
def batch(incident, staff):
    item(incident, 100, "USDC", "1.5", kind="liquidation", reference="fill:7:Ask")
    item(incident, 100, "USDC", "2", kind="bad_fill", reference="fill:9:Bid")
    item(incident, 100, "USDC", "0.25", kind="bad_fill", reference="fill:10:Bid")
    item(incident, 9, "BTC", "0.1", kind="wrong_withdrawal", reference="withdrawal:5")
    return payout_batch_create(incident=incident, actor=staff.fin)


def test_the_csv_for_treasury_is_exactly_as_specified(batch, tmp_path):
    payout_files_write(batch=batch, directory=tmp_path / "out")

    assert (tmp_path / "out" / "pay-july.1.csv").read_bytes() == (
        b"lineKey,userId,asset,amount\npay-july.1.1,9,BTC,0.10000000\npay-july.1.2,100,USDC,3.750000\n"
    )


def test_the_json_for_treasury_lists_each_lines_items_by_kind_then_reference(batch, tmp_path):
    payout_files_write(batch=batch, directory=tmp_path)

    document = json.loads((tmp_path / "pay-july.1.json").read_text())
    created_at = batch.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert document == {
        "incident": "pay-july",
        "batch": 1,
        "createdAt": created_at,
        "lines": [
            {
                "lineKey": "pay-july.1.1",
                "userId": 9,
                "asset": "BTC",
                "amount": "0.10000000",
                "items": [{"kind": "wrong_withdrawal", "reference": "withdrawal:5", "amount": "0.10000000"}],
            },
            {
                "lineKey": "pay-july.1.2",
                "userId": 100,
                "asset": "USDC",
                "amount": "3.750000",
                "items": [
                    {"kind": "bad_fill", "reference": "fill:10:Bid", "amount": "0.250000"},
                    {"kind": "bad_fill", "reference": "fill:9:Bid", "amount": "2.000000"},
                    {"kind": "liquidation", "reference": "fill:7:Ask", "amount": "1.500000"},
                ],
            },
        ],
    }


def test_payout_batch_creates_the_folder_writes_both_files_and_says_what_it_made(incident, staff, tmp_path):
    item(incident, 10, "USDC", "5")
    item(incident, 11, "USDC", "6")

    out = run("payout_batch", "pay-july", "--by", "fin", "--output", str(tmp_path / "new" / "folder"))

    assert "Batch 1 of pay-july: 2 lines" in out
    assert sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == ["pay-july.1.csv", "pay-july.1.json"]
    assert AuditRecord.objects.get(object_type="payout_batch").actor == "command-line fin"


def test_payout_batch_with_nothing_to_pay_says_so_and_succeeds(incident, staff, tmp_path):
    out = run("payout_batch", "pay-july", "--by", "fin", "--output", str(tmp_path))

    assert out == "no approved item to pay\n"
    assert PayoutBatch.objects.count() == 0


def test_payout_files_writes_the_same_bytes_again_and_changes_nothing(incident, staff, tmp_path):
    item(incident, 10, "USDC", "5")
    item(incident, 10, "BTC", "0.3")
    run("payout_batch", "pay-july", "--by", "fin", "--output", str(tmp_path / "first"))
    before = state()

    run("payout_files", "pay-july", "1", "--output", str(tmp_path / "again"))

    for name in ("pay-july.1.csv", "pay-july.1.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "first" / name).read_bytes()
    assert state() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("payout_files", "nope", "1"), "no incident 'nope'"),
        (("payout_files", "pay-july", "7"), "incident pay-july has no payout batch 7"),
        (("payout_batch", "nope", "--by", "fin"), "no incident 'nope'"),
        (("payout_batch", "pay-july", "--by", "nobody"), "no user 'nobody'"),
    ],
)
def test_commands_name_an_unknown_incident_batch_or_user(incident, staff, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args, "--output", str(tmp_path))


# --- confirmations ---


@pytest.fixture
def exported(incident, staff):
    """Three exported lines of USDC 5: pay-july.1.1 (user U[0]), .1.2 (U[1]), .1.3 (U[2])."""
    for user_id in U[:3]:
        item(incident, user_id, "USDC", "5")
    return payout_batch_create(incident=incident, actor=staff.fin)


def test_a_confirmation_records_paid_and_failed_lines_and_pays_the_paid_lines_items(exported, staff):
    recorded = confirm(staff, f"pay-july.1.1,paid,tx-1,{AT}", "pay-july.1.2,failed,,2025-07-10T09:31:00.5+00:00")

    lines = dict(PayoutLine.objects.values_list("key", "status"))
    assert lines == {"pay-july.1.1": "paid", "pay-july.1.2": "failed", "pay-july.1.3": "exported"}
    assert (recorded.rows, recorded.paid, recorded.failed, recorded.unchanged) == (2, 1, 1, 0)
    assert PayoutLine.objects.get(key="pay-july.1.2").confirmed_at == datetime(2025, 7, 10, 9, 31, 0, 500000, UTC)
    assert dict(Item.objects.values_list("user_id", "status")) == {U[0]: "paid", U[1]: "approved", U[2]: "approved"}
    assert PayoutLineItem.objects.filter(line__key="pay-july.1.2", is_holding=True).count() == 1


def test_a_confirmation_leaves_a_trail_for_each_line_and_item_it_changes(exported, staff):
    confirm(staff, f"pay-july.1.1,paid,tx-1,{AT}", f"pay-july.1.2,failed,,{AT}")

    line = PayoutLine.objects.get(key="pay-july.1.1")
    paid_item = line.entries.get().item_id
    records = AuditRecord.objects.filter(action__in=["paid", "failed"]).order_by("id")
    assert [(r.object_type, r.action, r.actor) for r in records] == [
        ("payout_line", "paid", "fin"),
        ("payout_line", "failed", "fin"),
        ("item", "paid", "fin"),
    ]
    assert records[0].before == {"status": "exported", "transaction_id": "", "confirmed_at": None}
    assert records[0].after == {
        "status": "paid",
        "transaction_id": "tx-1",
        "confirmed_at": "2025-07-10T09:30:00.000000Z",
    }
    assert (records[2].object_id, records[2].after) == (
        paid_item,
        {"status": "paid", "version": 1, "line": "pay-july.1.1"},
    )


@pytest.mark.parametrize(
    "text, moment",
    [
        ("2025-07-10T09:30:00Z", datetime(2025, 7, 10, 9, 30, tzinfo=UTC)),
        ("2025-07-10T09:30Z", datetime(2025, 7, 10, 9, 30, tzinfo=UTC)),
        ("2025-07-10T09:30:00+00:00", datetime(2025, 7, 10, 9, 30, tzinfo=UTC)),
        ("2025-07-10T09:30:00.123456789Z", datetime(2025, 7, 10, 9, 30, 0, 123456, UTC)),
    ],
)
def test_confirmed_at_is_iso_8601_in_utc(exported, staff, text, moment):
    confirm(staff, f"pay-july.1.1,paid,tx-1,{text}")

    assert PayoutLine.objects.get(key="pay-july.1.1").confirmed_at == moment


def test_a_bom_crlf_line_ends_and_blank_lines_are_accepted(exported, staff):
    content = (
        "\ufeff"
        + HEADER.replace("\n", "\r\n")
        + "\r\n"
        + f"pay-july.1.1,paid,tx-1,{AT}\r\n\r\n  \r\n"
        + f"pay-july.1.2,failed,,{AT}"
    ).encode()

    recorded = payouts_confirm(content=content, file_name="t.csv", actor=staff.fin)

    assert (recorded.paid, recorded.failed) == (1, 1)


def test_the_same_file_twice_records_each_line_once_and_keeps_the_first_time(exported, staff):
    confirm(staff, f"pay-july.1.1,paid,tx-1,{AT}", f"pay-july.1.2,failed,,{AT}")
    before = state()[:4]

    again = confirm(
        staff,
        "pay-july.1.1,paid,tx-1,2025-07-12T00:00:00Z",
        "pay-july.1.2,failed,,2025-07-12T00:00:00Z",
        f"pay-july.1.1,paid,tx-1,{AT}",
    )

    assert (again.rows, again.paid, again.failed, again.unchanged) == (3, 0, 0, 3)
    assert state()[:4] == before
    assert PayoutLine.objects.get(key="pay-july.1.1").confirmed_at == datetime(2025, 7, 10, 9, 30, tzinfo=UTC)
    assert AuditRecord.objects.filter(object_type="payout_line", action="paid").count() == 1


def test_a_key_twice_in_one_file_with_the_same_answer_is_recorded_once(exported, staff):
    recorded = confirm(staff, f"pay-july.1.1,paid,tx-1,{AT}", "pay-july.1.1,paid,tx-1,2025-07-11T00:00:00Z")

    assert (recorded.paid, recorded.unchanged) == (1, 1)
    assert PayoutLine.objects.get(key="pay-july.1.1").confirmed_at == datetime(2025, 7, 10, 9, 30, tzinfo=UTC)


def test_a_failed_line_keeps_holding_its_items(exported, staff):
    confirm(staff, f"pay-july.1.1,failed,,{AT}", f"pay-july.1.2,failed,,{AT}", f"pay-july.1.3,failed,,{AT}")

    assert payout_batch_create(incident=exported.incident, actor=staff.fin) is None
    assert set(Item.objects.values_list("status", flat=True)) == {"approved"}


# Each file's error, on the line it names; `earlier` is recorded first, and `released` released.
CONFIRMATION_ERRORS = {
    "unknown key": ([], None, [f"pay-july.1.9,paid,tx-9,{AT}"], "line 2: unknown key pay-july.1.9"),
    "bad status": ([], None, [f"pay-july.1.1,done,tx-1,{AT}"], "line 2: status 'done' is neither paid nor failed"),
    "time without zone": ([], None, ["pay-july.1.1,paid,tx-1,2025-07-10T09:30:00"], "line 2: confirmedAt"),
    "time in another zone": ([], None, ["pay-july.1.1,paid,tx-1,2025-07-10T09:30:00+02:00"], "line 2: confirmedAt"),
    "not a time": ([], None, ["pay-july.1.1,paid,tx-1,2025-02-30T09:30:00Z"], "line 2: confirmedAt"),
    "a date alone": ([], None, ["pay-july.1.1,paid,tx-1,2025-07-10Z"], "line 2: confirmedAt"),
    "paid without transaction": (
        [],
        None,
        [f"pay-july.1.1,paid,,{AT}"],
        "line 2: pay-july.1.1 is paid without a transactionId",
    ),
    "twice, other status": (
        [],
        None,
        [f"pay-july.1.1,paid,tx-1,{AT}", f"pay-july.1.2,paid,tx-2,{AT}", f"pay-july.1.1,failed,tx-1,{AT}"],
        "line 4: pay-july.1.1 is already on line 2 with paid tx-1, here with failed tx-1",
    ),
    "twice, other transaction": (
        [],
        None,
        [f"pay-july.1.1,paid,tx-1,{AT}", f"pay-july.1.1,paid,tx-one,{AT}"],
        "line 3: pay-july.1.1 is already on line 2 with paid tx-1, here with paid tx-one",
    ),
    "paid reported failed": (
        [f"pay-july.1.1,paid,tx-1,{AT}"],
        None,
        [f"pay-july.1.1,failed,,{AT}"],
        "line 2: pay-july.1.1 is already paid (transaction tx-1): it cannot be failed",
    ),
    "paid with another transaction": (
        [f"pay-july.1.1,paid,tx-1,{AT}"],
        None,
        [f"pay-july.1.1,paid,tx-2,{AT}"],
        "line 2: pay-july.1.1 is already paid with transaction tx-1, not tx-2",
    ),
    "failed reported paid": (
        [f"pay-july.1.1,failed,,{AT}"],
        None,
        [f"pay-july.1.1,paid,tx-1,{AT}"],
        "line 2: pay-july.1.1 has already failed: it cannot be paid",
    ),
    "released reported": (
        [f"pay-july.1.1,failed,,{AT}"],
        "pay-july.1.1",
        [f"pay-july.1.1,failed,,{AT}"],
        "line 2: pay-july.1.1 was released: a released line is never reported",
    ),
    "too few fields": ([], None, ["pay-july.1.1,paid,tx-1"], "line 2: 4 fields expected"),
    "a lone carriage return": ([], None, [f"pay-july.1.1,paid,tx\r1,{AT}"], "line 2: new-line character"),
}


@pytest.mark.parametrize("case", CONFIRMATION_ERRORS.values(), ids=CONFIRMATION_ERRORS.keys())
def test_a_file_with_an_error_is_rejected_naming_its_line_and_changes_nothing(exported, staff, case):
    earlier, released, rows, message = case
    if earlier:
        confirm(staff, *earlier)
    if released:
        payout_line_release(key=released, actor=staff.fin, reason="treasury will retry")
    before = state()
    content = confirmation(*rows, f"pay-july.1.3,paid,tx-3,{AT}")  # its good row is not recorded either

    with pytest.raises(ConfirmationInvalid) as rejected:
        payouts_confirm(content=content, file_name="t.csv", actor=staff.fin)

    assert rejected.value.rule == "confirmation file"
    assert [e for e in rejected.value.errors if e.startswith(message)], rejected.value.errors
    assert state() == before


def test_every_error_of_a_file_is_named_in_line_order(exported, staff):
    content = confirmation(f"pay-july.1.9,paid,tx,{AT}", "", f"pay-july.1.1,paid,,{AT}", "pay-july.1.2,paid,tx,never")

    with pytest.raises(ConfirmationInvalid) as rejected:
        payouts_confirm(content=content, file_name="t.csv", actor=staff.fin)

    assert [e.split(":")[0] for e in rejected.value.errors] == ["line 2", "line 4", "line 5"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "line 1: the header lineKey,status,transactionId,confirmedAt is missing"),
        (b"key,status,tx,at\n", "line 1: the header must be lineKey,status,transactionId,confirmedAt"),
        (HEADER.encode() + b"pay-july.1.1,paid,tx-\xff,2025-07-10T09:30:00Z\n", "line 2: not UTF-8"),
    ],
)
def test_a_file_that_is_no_confirmation_file_is_rejected(exported, staff, content, message):
    with pytest.raises(ConfirmationInvalid) as rejected:
        payouts_confirm(content=content, file_name="t.csv", actor=staff.fin)

    assert rejected.value.errors == [message]


def test_confirm_payouts_records_a_file_and_names_each_error_of_a_rejected_one(exported, staff, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(confirmation(f"pay-july.1.1,paid,tx-1,{AT}", f"pay-july.1.2,failed,,{AT}"))
    bad.write_bytes(confirmation(f"pay-july.1.1,failed,,{AT}", f"pay-july.1.7,paid,tx,{AT}"))
    errors = io.StringIO()

    out = run("confirm_payouts", str(good), "--by", "fin")
    with pytest.raises(CommandError, match=r"refused \(confirmation file\): .*bad.csv rejected, 2 error"):
        call_command("confirm_payouts", str(bad), "--by", "fin", stdout=io.StringIO(), stderr=errors)

    assert "2 rows; 1 paid, 1 failed, 0 unchanged" in out
    assert errors.getvalue().splitlines() == [
        "line 2: pay-july.1.1 is already paid (transaction tx-1): it cannot be failed",
        "line 3: unknown key pay-july.1.7",
    ]
    assert PayoutConfirmation.objects.get().recorded_by == "command-line fin"


def test_confirm_payouts_names_a_missing_file(staff, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("confirm_payouts", str(tmp_path / "nope.csv"), "--by", "fin")


# --- releasing ---


@pytest.fixture
def failed(exported, staff):
    confirm(staff, f"pay-july.1.1,failed,tx-f,{AT}", f"pay-july.1.2,paid,tx-2,{AT}")
    return PayoutLine.objects.get(key="pay-july.1.1")


def test_a_released_line_lets_a_later_batch_pay_its_items_under_a_new_key(failed, staff):
    held = failed.entries.get().item_id

    line = payout_line_release(key=failed.key, actor=staff.fin, reason="wrong deposit address; fixed")
    batch = payout_batch_create(incident=failed.batch.incident, actor=staff.fin)

    assert (line.status, line.released_by, line.release_reason) == ("released", "fin", "wrong deposit address; fixed")
    assert (batch.number, keys(batch)) == (2, ["pay-july.2.1"])
    assert list(batch.lines.get().entries.values_list("item_id", flat=True)) == [held]
    assert list(failed.entries.values_list("is_holding", flat=True)) == [False]
    record = AuditRecord.objects.get(object_type="payout_line", action="released")
    assert (record.before["status"], record.after["status"], record.after["items_freed"], record.reason) == (
        "failed",
        "released",
        [held],
        "wrong deposit address; fixed",
    )


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_release_needs_a_reason(failed, staff, reason):
    before = state()

    with pytest.raises(Refused) as refused:
        payout_line_release(key=failed.key, actor=staff.fin, reason=reason)

    assert refused.value.rule == "reason required"
    assert state() == before


@pytest.mark.parametrize(
    "key, rule", [("pay-july.1.2", "not failed"), ("pay-july.1.3", "not failed"), ("pay-july.1.9", "unknown line")]
)
def test_only_a_failed_line_is_released(failed, staff, key, rule):
    with pytest.raises(Refused) as refused:
        payout_line_release(key=key, actor=staff.fin, reason="retry")

    assert refused.value.rule == rule


def test_a_line_the_ledger_credited_is_not_released(failed, staff, tmp_path):
    ledger_import(tmp_path / "credits", [credit("payout:pay-july.1.1", U[0], "USDC", "5")])
    before = state()

    with pytest.raises(Refused, match="treasury said failed, but the money arrived") as refused:
        payout_line_release(key=failed.key, actor=staff.fin, reason="retry")

    assert refused.value.rule == "ledger credit"
    assert state() == before


def test_a_credit_for_another_key_does_not_stop_a_release(failed, staff, tmp_path):
    ledger_import(
        tmp_path / "credits",
        [credit("payout:pay-july.1.10", U[0], "USDC", "5"), credit("payout:pay-july.1.1x", U[0], "USDC", "5")],
    )

    line = payout_line_release(key=failed.key, actor=staff.fin, reason="retry")

    assert line.status == "released"


def test_release_line_releases_from_the_command_line_and_refuses_without_a_reason(failed, staff):
    with pytest.raises(CommandError, match=r"refused \(reason required\)"):
        run("release_line", failed.key, "--by", "fin")
    out = run("release_line", failed.key, "--by", "fin", "--reason", "address fixed")

    assert "pay-july.1.1 released" in out
    failed.refresh_from_db()
    assert (failed.status, failed.released_by) == ("released", "command-line fin")


# --- roles ---


@pytest.mark.parametrize("who", ["sam", "ava", "root"])
def test_only_finance_batches_confirms_and_releases(failed, staff, who):
    actor = getattr(staff, who)
    item(failed.batch.incident, 20, "USDC", "1")
    before = state()
    attempts = [
        lambda: payout_batch_create(incident=failed.batch.incident, actor=actor),
        lambda: payouts_confirm(content=confirmation(f"pay-july.1.3,paid,tx,{AT}"), file_name="t.csv", actor=actor),
        lambda: payout_line_release(key=failed.key, actor=actor, reason="retry"),
    ]

    for attempt in attempts:
        with pytest.raises(RoleRefused) as refused:
            attempt()
        assert refused.value.rule == "role"
        assert "only finance may" in str(refused.value)
    assert state() == before


@pytest.mark.parametrize("who", ["sam", "ava", "root"])
def test_the_commands_refuse_anyone_but_finance_with_the_rule(failed, staff, tmp_path, who):
    (tmp_path / "c.csv").write_bytes(confirmation(f"pay-july.1.3,paid,tx,{AT}"))
    item(failed.batch.incident, 20, "USDC", "1")
    before = state()

    for args in [
        ("payout_batch", "pay-july", "--output", str(tmp_path / "out")),
        ("confirm_payouts", str(tmp_path / "c.csv")),
        ("release_line", failed.key, "--reason", "retry"),
    ]:
        with pytest.raises(CommandError, match=rf"refused \(role\): {who} may not") as refused:
            run(*args, "--by", who)
        assert refused.value.returncode == 1
    assert state() == before


# --- reconciliation ---


@pytest.fixture
def settled(incident, staff):
    """Lines .1.1 .. .1.6 paid (USDC 5 each, BTC for .1.6), .1.7 failed, .1.8 exported; line n is user U[n - 1]."""
    for n, user_id in enumerate(U[:8], start=1):
        item(incident, user_id, "BTC" if n == 6 else "USDC", "5")
    payout_batch_create(incident=incident, actor=staff.fin)
    confirm(staff, *(f"pay-july.1.{n},paid,tx-{n},{AT}" for n in range(1, 7)), f"pay-july.1.7,failed,,{AT}")
    return incident


def reconcile_command(slug="pay-july") -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("reconcile", slug, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_reconciliation_with_every_credit_right_is_only_the_header(settled, tmp_path):
    ledger_import(
        tmp_path / "credits",
        [
            *(credit(f"payout:pay-july.1.{n}", U[n - 1], "USDC", "5.000000") for n in (1, 2, 3, 4, 5)),
            credit("payout:pay-july.1.6", U[5], "BTC", "5"),
            credit("payout:other.1.1", U[0], "USDC", "1"),
        ],
    )  # another incident's

    assert reconcile_command() == ("lineKey,userId,asset,expected,found,problem\n", 0)


def test_reconciliation_reports_each_difference_in_the_specified_order(settled, tmp_path):
    ledger_import(
        tmp_path / "credits",
        [
            credit("payout:pay-july.1.2", U[1], "USDC", "5"),
            credit("payout:pay-july.1.2", U[1], "USDC", "5"),
            credit("payout:pay-july.1.3", U[9], "USDT", "4.5"),
            credit("payout:pay-july.1.4", U[3], "USDC", "41"),
            credit("payout:pay-july.1.5", U[4], "USDC", "5"),
            credit("payout:pay-july.1.6", U[5], "BTC", "5.00000001"),
            credit("payout:pay-july.1.7", U[6], "USDC", "2"),
            credit("payout:pay-july.1.7", U[6], "USDC", "3"),
            credit("payout:pay-july.1.8", U[7], "USDC", "5"),
            credit("payout:pay-july.1.10", U[8], "USDC", "1.5"),
            credit("payout:pay-july.1.9", U[8], "BTC", "0.5"),
            credit(None, U[0], "USDC", "7"),
            credit("goodwill", U[1], "SOL", "0.25"),
        ],
    )
    ids = [entry for entry in reconcile(incident=settled) if entry.problem == "unreferenced_credit"]

    out, status = reconcile_command()

    assert status == 1
    assert out == (
        "lineKey,userId,asset,expected,found,problem\n"
        "pay-july.1.1,100007,USDC,5.000000,,missing_credit\n"
        "pay-july.1.2,100014,USDC,1,2,duplicate_credit\n"
        "pay-july.1.3,100021,USDC,100021 USDC,100084 USDT,wrong_account\n"
        "pay-july.1.3,100021,USDC,5.000000,4.500000,amount_mismatch\n"
        "pay-july.1.4,100028,USDC,5.000000,41.000000,amount_mismatch\n"
        "pay-july.1.6,100042,BTC,5.00000000,5.00000001,amount_mismatch\n"
        "pay-july.1.7,100049,USDC,,5.000000,credit_not_paid\n"
        "pay-july.1.8,100056,USDC,,5.000000,credit_not_paid\n"
        "pay-july.1.10,100063,USDC,,1.500000,unknown_credit\n"
        "pay-july.1.9,100063,BTC,,0.50000000,unknown_credit\n"
        f"{ids[0].line_key},100007,USDC,,7.000000,unreferenced_credit\n"
        f"{ids[1].line_key},100014,SOL,,0.250000000,unreferenced_credit\n"
    )
    assert int(ids[0].line_key.removeprefix("ledger:")) < int(ids[1].line_key.removeprefix("ledger:"))


def test_reconcile_writes_a_file_when_asked(settled, tmp_path):
    target = tmp_path / "report.csv"

    with pytest.raises(CommandError) as differences:
        call_command("reconcile", "pay-july", "--output", str(target), stdout=io.StringIO())

    assert differences.value.returncode == 1
    assert target.read_bytes().splitlines()[0] == b"lineKey,userId,asset,expected,found,problem"
    assert len(target.read_bytes().splitlines()) == 7  # six paid lines, no credit yet


def test_reconcile_names_an_unknown_incident(db):
    with pytest.raises(CommandError, match="no incident 'nope'"):
        call_command("reconcile", "nope", stdout=io.StringIO())


# --- end to end on the July 3 sample ---

SAMPLE = "sample-2025-07-03"
FAILING = [(100049, "BTC"), (100056, "USDC")]  # treasury cannot pay these lines of the first batch


def csv_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def approve_everything_approvable(incident: Incident) -> None:
    """Policy approved the small items; support approves the rest, an approver gives the second
    approval the large ones need, and a needs-review item gets an amount and two other approvals."""
    from claims.services import item_amount_set, items_approve

    sam = Actor.person(StaffFactory(username="sam", roles=["support"]))
    ava = Actor.person(StaffFactory(username="ava", roles=["approver"]))
    abe = Actor.person(StaffFactory(username="abe", roles=["approver"]))
    review = Item.objects.filter(incident=incident, status="needs_review").order_by("id").first()
    item_amount_set(item_id=review.id, actor=sam, amount="10.5", reason="loss checked by hand")
    undecided = list(Item.objects.filter(incident=incident, status="computed").values_list("id", flat=True))
    items_approve(item_ids=undecided, actor=sam)
    items_approve(item_ids=undecided, actor=ava)
    items_approve(item_ids=[review.id], actor=abe)


def owed(incident: Incident) -> dict[tuple, str]:
    """The approved items' total per (userId, asset), with the asset's decimals."""
    from claims.detectors import quantize
    from exchange.selectors import asset_decimals

    totals, decimals = {}, asset_decimals()
    for user_id, asset, amount in Item.objects.filter(incident=incident, status="approved").values_list(
        "user_id", "asset", "amount"
    ):
        totals[(str(user_id), asset)] = totals.get((str(user_id), asset), Decimal(0)) + amount
    return {key: f"{quantize(total, decimals[key[1]]):f}" for key, total in totals.items()}


def confirm_file(folder: Path, name: str, rows: list[list[str]], failing=()) -> Path:
    path = folder / name
    path.write_text(
        HEADER
        + "".join(
            f"{key},failed,,{AT}\n" if (int(user_id), asset) in failing else f"{key},paid,tx-{key},{AT}\n"
            for key, user_id, asset, _ in rows
        )
    )
    return path


def sample_paid(incident: Incident, tmp_path: Path) -> list[list[str]]:
    """The sample detected, approved, paid in a batch whose two lines fail, those released and
    paid by a second batch. Returns the paid lines as the treasury files wrote them."""
    from claims.services import claim_file

    StaffFactory(username="fin", roles=["finance"])
    run("detect", SAMPLE)
    claim = claim_file(
        incident_slug=SAMPLE,
        user_id=100056,
        channel="api",
        kind="liquidation",
        references={"trade_id": 982069},
        actor="front end",
    )
    approve_everything_approvable(incident)
    expected = owed(incident)

    run("payout_batch", SAMPLE, "--by", "fin", "--output", str(tmp_path / "out"))
    first = csv_rows(tmp_path / "out" / f"{SAMPLE}.1.csv")
    assert {(user_id, asset): amount for _, user_id, asset, amount in first} == expected
    assert [key for key, *_ in first] == [f"{SAMPLE}.1.{n}" for n in range(1, len(expected) + 1)]
    assert [int(user_id) for _, user_id, *_ in first] == sorted(int(user_id) for _, user_id, *_ in first)
    run("confirm_payouts", str(confirm_file(tmp_path, "c1.csv", first, FAILING)), "--by", "fin")
    assert Claim.objects.get(id=claim.id).status == "approved"  # its line failed
    for key, user_id, asset, _ in first:
        if (int(user_id), asset) in FAILING:
            run("release_line", key, "--by", "fin", "--reason", "treasury: deposit address rejected")
    held = set(PayoutLineItem.objects.filter(line__status="released").values_list("item_id", flat=True))

    run("payout_batch", SAMPLE, "--by", "fin", "--output", str(tmp_path / "out"))
    second = csv_rows(tmp_path / "out" / f"{SAMPLE}.2.csv")
    assert [row[:3] for row in second] == [[f"{SAMPLE}.2.1", "100049", "BTC"], [f"{SAMPLE}.2.2", "100056", "USDC"]]
    assert set(PayoutLineItem.objects.filter(line__batch__number=2).values_list("item_id", flat=True)) == held
    run("confirm_payouts", str(confirm_file(tmp_path, "c2.csv", second)), "--by", "fin")

    assert set(
        Item.objects.filter(incident=incident).exclude(status="needs_review").values_list("status", flat=True)
    ) == {"paid"}
    assert Claim.objects.get(id=claim.id).status == "paid"
    assert list(Notification.objects.filter(claim=claim, kind="payout").values_list("context", flat=True)) == [
        {"amounts": [{"asset": "USDC", "amount": "62.243932"}]}
    ]
    return [row for row in first if (int(row[1]), row[2]) not in FAILING] + second


def credits_import(folder: Path, lines: list[list[str]], *extra: dict) -> None:
    ledger_import(
        folder,
        [*(credit(f"payout:{key}", int(user_id), asset, amount) for key, user_id, asset, amount in lines), *extra],
    )


@pytest.mark.django_db(transaction=True)
def test_the_sample_is_paid_once_through_a_failed_line_and_reconciled_against_the_ledger(
    open_sample_incident, tmp_path
):
    paid = sample_paid(open_sample_incident, tmp_path)
    missing, duplicated, wrong, *right = paid
    wrong_amount = f"{Decimal(wrong[3]) + 1:f}"

    credits_import(
        tmp_path / "credits",
        [duplicated, duplicated, [*wrong[:3], wrong_amount], *right],
        credit(f"payout:{SAMPLE}.3.1", 100007, "USDC", "12"),
    )
    out, status = reconcile_command(SAMPLE)

    assert status == 1
    assert out.splitlines() == [
        "lineKey,userId,asset,expected,found,problem",
        f"{missing[0]},{missing[1]},{missing[2]},{missing[3]},,missing_credit",
        f"{duplicated[0]},{duplicated[1]},{duplicated[2]},1,2,duplicate_credit",
        f"{wrong[0]},{wrong[1]},{wrong[2]},{wrong[3]},{wrong_amount},amount_mismatch",
        f"{SAMPLE}.3.1,100007,USDC,,12.000000,unknown_credit",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_sample_with_every_credit_right_reconciles_to_the_header_alone(open_sample_incident, tmp_path):
    paid = sample_paid(open_sample_incident, tmp_path)

    credits_import(tmp_path / "credits", paid)

    assert reconcile_command(SAMPLE) == ("lineKey,userId,asset,expected,found,problem\n", 0)


# --- at the same moment (PostgreSQL: SQLite has one writer at a time) ---


def at_once(calls) -> list:
    """Run each call in its own thread and connection, all released at the same moment."""
    results, start = [None] * len(calls), threading.Barrier(len(calls))

    def worker(n, call):
        try:
            start.wait()
            results[n] = call()
        except Exception as exc:  # noqa: BLE001 - the test asserts on what each thread met
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_five_batches_created_at_the_same_moment_never_share_an_item(incident, staff):
    for user_id in range(10, 40):
        item(incident, user_id, ("USDC", "BTC", "USDT")[user_id % 3], "1")
    assets = [None, "USDC", "BTC", None, "USDT"]

    results = at_once(
        [lambda asset=asset: payout_batch_create(incident=incident, actor=staff.fin, asset=asset) for asset in assets]
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    batches = [r for r in results if r is not None]
    assert sorted(b.number for b in batches) == list(range(1, len(batches) + 1))
    held = list(PayoutLineItem.objects.filter(is_holding=True).values_list("item_id", flat=True))
    assert sorted(held) == sorted(Item.objects.values_list("id", flat=True))  # each item once, none left out


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_one_file_recorded_twice_at_the_same_moment_pays_each_line_once(exported, staff):
    content = confirmation(*(f"pay-july.1.{n},paid,tx-{n},{AT}" for n in (1, 2, 3)))

    results = at_once([lambda: payouts_confirm(content=content, file_name="t.csv", actor=staff.fin)] * 2)

    assert sorted((r.paid, r.unchanged) for r in results) == [(0, 3), (3, 0)]
    assert AuditRecord.objects.filter(object_type="payout_line", action="paid").count() == 3
    assert AuditRecord.objects.filter(object_type="item", action="paid").count() == 3
    assert set(Item.objects.values_list("status", flat=True)) == {"paid"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_two_files_disagreeing_at_the_same_moment_record_one_and_reject_the_other(exported, staff):
    files = [confirmation(f"pay-july.1.1,paid,tx-{n},{AT}") for n in ("a", "b")]

    results = at_once(
        [
            lambda content=content: payouts_confirm(content=content, file_name="t.csv", actor=staff.fin)
            for content in files
        ]
    )

    assert sorted(type(r).__name__ for r in results) == ["ConfirmationInvalid", "PayoutConfirmation"]
    assert PayoutLine.objects.get(key="pay-july.1.1").transaction_id in ("tx-a", "tx-b")
