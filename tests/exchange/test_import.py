import gzip
import io
import json
import shutil
import tarfile
import zipfile
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from exchange import models as m

from .importing import append_line, failing_import, first_line, import_bundle, ledger_state, row_counts

pytestmark = pytest.mark.django_db

JULY3_COUNTS = {
    "accounts": 12,
    "assets": 5,
    "markets": 7,
    "fills": 112,
    "withdrawals": 9,
    "deposits": 4,
    "ledger": 74,
    "balance_snapshots": 46,
    "position_snapshots": 48,
    "mark_prices": 22217,
}


def test_importing_the_sample_stores_every_line(july3_bundle):
    output = import_bundle(july3_bundle)

    assert row_counts() == JULY3_COUNTS
    assert "fills.jsonl" in output and "112 inserted" in output


def test_a_second_import_of_the_same_bundle_inserts_nothing_and_says_so(july3_bundle):
    import_bundle(july3_bundle)
    before = ledger_state()

    output = import_bundle(july3_bundle)

    assert "nothing new" in output
    assert ledger_state() == before
    assert list(m.ImportRun.objects.order_by("id").values_list("status", flat=True)) == ["succeeded", "succeeded"]
    assert sum(m.ImportRun.objects.order_by("id").last().files.values_list("inserted", flat=True)) == 0


def test_a_recheck_reads_every_line_again_and_still_inserts_nothing(july3_bundle):
    import_bundle(july3_bundle)
    before = ledger_state()

    output = import_bundle(july3_bundle, "--recheck")

    assert "(unchanged" not in output
    assert "22217 already present" in output
    assert ledger_state() == before


def test_an_import_is_recorded_with_who_when_checksums_and_counts(july3_bundle):
    import_bundle(july3_bundle, "--by", "ops-alice")

    run = m.ImportRun.objects.get()
    files = {f.name: f for f in run.files.all()}
    assert run.imported_by == "ops-alice" and run.status == "succeeded"
    assert run.started_at <= run.finished_at
    assert files["fills.jsonl"].lines_read == 112 and files["fills.jsonl"].inserted == 112
    assert files["mark_prices.jsonl"].member == "mark_prices.jsonl.gz"
    assert len(files["accounts.jsonl"].sha256) == 64
    assert set(m.Fill.objects.values_list("import_run_id", flat=True)) == {run.id}


def _zip(folder, target):
    with zipfile.ZipFile(target, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"july3/{path.name}")
    return target


def _tar(folder, target):
    with tarfile.open(target, "w:gz") as archive:
        for path in folder.iterdir():
            archive.add(path, path.name)
    return target


@pytest.mark.parametrize("pack", [_zip, _tar], ids=["zip", "tar.gz"])
def test_a_zip_or_tar_gz_of_the_folder_imports_the_same(july3_bundle, tmp_path, pack):
    archive = pack(july3_bundle, tmp_path / ("bundle.zip" if pack is _zip else "bundle.tar.gz"))

    import_bundle(archive)

    assert row_counts() == JULY3_COUNTS
    fill = m.Fill.objects.get(trade_id=982001, side="Bid")
    assert fill.price == Decimal("142.23") and fill.fee == Decimal("0.281103")


def test_an_archive_of_an_already_imported_folder_is_a_no_op(july3_bundle, tmp_path):
    import_bundle(july3_bundle)

    output = import_bundle(_zip(july3_bundle, tmp_path / "again.zip"))

    assert "nothing new" in output
    assert row_counts() == JULY3_COUNTS


def test_timestamps_are_utc_and_decimals_keep_every_digit(small_bundle):
    append_line(
        small_bundle,
        "fills.jsonl",
        {
            "userId": 100007,
            "tradeId": 1,
            "orderId": "o-1",
            "symbol": "SOL_USDC",
            "side": "Bid",
            "price": "150.5",
            "quantity": "0.000000000000000001",
            "fee": "0",
            "feeSymbol": "USDC",
            "isMaker": False,
            "systemOrderType": None,
            "timestamp": "2025-07-03T12:04:31.512",
        },
    )

    import_bundle(small_bundle)

    fill = m.Fill.objects.get(trade_id=1)
    assert fill.quantity == Decimal("0.000000000000000001")
    assert fill.timestamp == datetime(2025, 7, 3, 12, 4, 31, 512000, tzinfo=UTC)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL stores 38 significant digits")
def test_postgresql_keeps_all_38_digits(small_bundle):
    append_line(
        small_bundle,
        "ledger.jsonl",
        {
            "id": 1,
            "userId": 100007,
            "symbol": "USDC",
            "quantity": "-12345678901234567890.123456789012345678",
            "kind": "adjustment",
            "timestamp": "2025-07-03T12:00:00",
        },
    )

    import_bundle(small_bundle)

    assert m.JournalEntry.objects.get(id=1).quantity == Decimal("-12345678901234567890.123456789012345678")


def test_a_json_number_is_read_from_its_own_text_not_through_float(small_bundle):
    append_line(
        small_bundle,
        "ledger.jsonl",
        '{"id": 2, "userId": 100007, "symbol": "USDC", "quantity": 0.1, '
        '"kind": "adjustment", "timestamp": "2025-07-03T12:00:00"}',
    )

    import_bundle(small_bundle)

    # Through float it would be 0.1000000000000000055511..., i.e. 0.100000000000000006 at 18 places.
    assert m.JournalEntry.objects.get(id=2).quantity == Decimal("0.1")


def test_gzipped_files_are_read(small_bundle):
    with open(small_bundle / "fills.jsonl", "rb") as plain, gzip.open(small_bundle / "fills.jsonl.gz", "wb") as gz:
        shutil.copyfileobj(plain, gz)
    (small_bundle / "fills.jsonl").unlink()

    import_bundle(small_bundle)

    assert m.Fill.objects.count() == 112


# --- bad input: a clear error naming file and line, and nothing written ---

BAD_LINES = {
    "malformed JSON": ("fills.jsonl", '{"userId": 100007, "tradeId": ', "malformed JSON", None),
    "missing key": ("fills.jsonl", {"drop": "price"}, "missing required key", "price"),
    "comma decimal": ("fills.jsonl", {"set": {"price": "12,5"}}, "not a plain decimal", "price"),
    "unknown side": ("fills.jsonl", {"set": {"side": "Buy"}}, "unknown value 'Buy'", "side"),
    "unknown user": ("fills.jsonl", {"set": {"userId": 999999}}, "unknown userId", "userId"),
    "zero quantity": ("fills.jsonl", {"set": {"quantity": "0"}}, "must be positive", "quantity"),
    "bad timestamp": ("ledger.jsonl", {"set": {"timestamp": "yesterday"}}, "not an ISO-8601 timestamp", "timestamp"),
    "spot position": ("position_snapshots.jsonl", {"set": {"symbol": "SOL_USDC"}}, "PERP market", "symbol"),
    "too many places": ("ledger.jsonl", {"set": {"quantity": "1.0000000000000000001"}}, "18 digits", "quantity"),
    "float-like bool": ("fills.jsonl", {"set": {"isMaker": "yes"}}, "expected true or false", "isMaker"),
    "NUL in a string": ("ledger.jsonl", {"set": {"reference": "a\u0000b"}}, "contains a NUL character", "reference"),
    "asset precision": ("assets.jsonl", {"set": {"symbol": "XYZ", "decimals": 40000}}, "between 0 and 18", "decimals"),
    # Found by the fuzz test (test_import_fuzz.py): each ended in an exception of its own.
    "lone surrogate": ("ledger.jsonl", {"set": {"reference": "a\ud800"}}, "not valid Unicode", "reference"),
    "beyond 64 bits": ("deposits.jsonl", {"set": {"withdrawalId": 2**70}}, "out of range", "withdrawalId"),
    "instant out of range": (
        "ledger.jsonl",
        {"set": {"timestamp": "0001-01-01T00:00:00+01:00"}},
        "out of range",
        "timestamp",
    ),
    "huge exponent": (
        "ledger.jsonl",
        '{"id": 5000000, "userId": 100007, "symbol": "USDC", "quantity": 1e99999999, '
        '"kind": "adjustment", "timestamp": "2025-07-03T12:00:00"}',
        "not a plain decimal",
        "quantity",
    ),
    "deep nesting": ("fills.jsonl", "[" * 5000, "malformed JSON: nested too deeply", None),
    "5000-digit number": ("fills.jsonl", '{"tradeId": ' + "1" * 5000 + "}", "malformed JSON: a number with more", None),
}


def _spoiled_line(bundle, filename, change):
    if isinstance(change, str):
        return change
    obj = first_line(bundle, filename)
    if "drop" in change:
        del obj[change["drop"]]
    obj.update(change.get("set", {}))
    if filename == "fills.jsonl":
        obj["tradeId"] = 5_000_000  # a new identity, so the line is judged on its own
    elif "id" in obj:
        obj["id"] = 5_000_000
    elif "snapshotAt" in obj:
        obj["snapshotAt"] = "2025-07-05T00:00:00"
    return json.dumps(obj)


@pytest.mark.parametrize("case", list(BAD_LINES), ids=list(BAD_LINES))
def test_a_bad_line_is_reported_with_file_line_and_key_and_nothing_is_written(small_bundle, july3_bundle, case):
    import_bundle(july3_bundle)
    before = ledger_state()
    filename, change, problem, key = BAD_LINES[case]
    lines_before = sum(1 for _ in open(small_bundle / filename))
    append_line(small_bundle, filename, _spoiled_line(small_bundle, filename, change))
    # A valid new line in another file, which must not be stored either.
    append_line(
        small_bundle, "accounts.jsonl", {"userId": 777, "email": "new@example.com", "createdAt": "2025-01-01T00:00:00"}
    )

    message = failing_import(small_bundle)

    assert f"{filename}, line {lines_before + 1}" in message
    assert problem in message
    if key:
        assert f"key '{key}'" in message
    assert "nothing was imported" in message
    assert ledger_state() == before
    assert m.ImportRun.objects.filter(status="failed").count() == 1


def test_a_long_bad_value_is_shown_shortened_in_the_error(small_bundle):
    append_line(small_bundle, "fills.jsonl", first_line(small_bundle, "fills.jsonl") | {"price": "9" * 100_000})

    message = failing_import(small_bundle)

    assert "fills.jsonl, line 113, key 'price': 99999" in message
    assert "(100000 characters) has more than 20 digits before the point" in message
    assert len(message) < 500


def test_every_bad_line_is_reported_not_only_the_first(small_bundle):
    append_line(small_bundle, "ledger.jsonl", "not json")
    append_line(small_bundle, "fills.jsonl", "[1, 2]")

    message = failing_import(small_bundle)

    assert "ledger.jsonl, line 75: malformed JSON" in message
    assert "fills.jsonl, line 113: expected a JSON object" in message


def test_a_duplicate_identity_with_other_values_is_a_conflict_naming_the_fields(small_bundle, july3_bundle):
    import_bundle(july3_bundle)
    before = ledger_state()
    fill = first_line(small_bundle, "fills.jsonl")
    fill["price"], fill["fee"] = "999.99", "0.2811030"  # the fee is the same value, written differently
    append_line(small_bundle, "fills.jsonl", fill)
    append_line(
        small_bundle, "accounts.jsonl", {"userId": 777, "email": "new@example.com", "createdAt": "2025-01-01T00:00:00"}
    )

    message = failing_import(small_bundle)

    assert "fills.jsonl, line 113: conflict: userId=100007, tradeId=982001, side=Bid" in message
    assert "price: 142.23 stored, 999.99 here" in message
    assert "fee:" not in message
    assert ledger_state() == before


def test_a_conflict_inside_one_bundle_is_reported_and_nothing_is_written(small_bundle):
    withdrawal = first_line(small_bundle, "withdrawals.jsonl")
    withdrawal["status"] = "confirmed" if withdrawal["status"] != "confirmed" else "failed"
    append_line(small_bundle, "withdrawals.jsonl", withdrawal)

    message = failing_import(small_bundle)

    assert "withdrawals.jsonl, line 10: conflict: id=5103" in message
    assert "another line of this file" in message
    assert row_counts() == dict.fromkeys(JULY3_COUNTS, 0)


def test_the_same_line_twice_is_stored_once(small_bundle):
    append_line(small_bundle, "deposits.jsonl", first_line(small_bundle, "deposits.jsonl"))

    output = import_bundle(small_bundle)

    assert m.Deposit.objects.count() == 4
    assert "deposits.jsonl" in output and "1 already present" in output


@pytest.mark.parametrize("filename", ["accounts.jsonl", "assets.jsonl", "markets.jsonl"])
def test_an_empty_required_file_is_an_error(small_bundle, filename):
    (small_bundle / filename).write_text("")

    message = failing_import(small_bundle)

    assert f"{filename}: the file is empty, but it is required" in message
    assert row_counts() == dict.fromkeys(JULY3_COUNTS, 0)


def test_a_missing_required_file_is_an_error(small_bundle):
    (small_bundle / "markets.jsonl").unlink()

    assert "markets.jsonl: the file is missing, but it is required" in failing_import(small_bundle)


def test_a_file_in_both_plain_and_gzipped_form_is_an_error(small_bundle):
    with gzip.open(small_bundle / "fills.jsonl.gz", "wb") as gz:
        gz.write((small_bundle / "fills.jsonl").read_bytes())

    assert "both fills.jsonl and fills.jsonl.gz are present" in failing_import(small_bundle)


def test_unknown_keys_are_ignored(small_bundle):
    fill = first_line(small_bundle, "fills.jsonl")
    fill.update(tradeId=42, venueNote="ignored")
    append_line(small_bundle, "fills.jsonl", fill)

    import_bundle(small_bundle)

    assert m.Fill.objects.filter(trade_id=42).exists()


def test_imported_rows_cannot_be_edited_or_deleted(july3_bundle):
    import_bundle(july3_bundle)
    fill = m.Fill.objects.first()

    with pytest.raises(m.AppendOnlyError):
        m.Fill.objects.filter(pk=fill.pk).update(price=1)
    with pytest.raises(m.AppendOnlyError):
        fill.delete()
    fill.price = Decimal("1")
    with pytest.raises(m.AppendOnlyError):
        fill.save()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the refusing trigger is PostgreSQL's")
def test_postgresql_refuses_raw_updates_and_deletes_of_ledger_rows(july3_bundle):
    from django.db import DatabaseError, transaction

    import_bundle(july3_bundle)

    for statement in ("UPDATE exchange_fill SET price = 1", "DELETE FROM exchange_markprice"):
        with pytest.raises(DatabaseError, match="imported history"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)
    assert m.Fill.objects.filter(price=1).count() == 0


def test_a_timestamp_with_an_offset_is_converted_to_utc(small_bundle):
    append_line(
        small_bundle,
        "ledger.jsonl",
        {
            "id": 3,
            "userId": 100007,
            "symbol": "USDC",
            "quantity": "1",
            "kind": "adjustment",
            "timestamp": "2025-07-03T14:00:00.250+02:00",
        },
    )

    import_bundle(small_bundle)

    assert m.JournalEntry.objects.get(id=3).timestamp == datetime(2025, 7, 3, 12, 0, 0, 250000, tzinfo=UTC)


def test_strings_with_tabs_backslashes_and_newlines_survive(small_bundle):
    append_line(
        small_bundle,
        "ledger.jsonl",
        {
            "id": 4,
            "userId": 100007,
            "symbol": "USDC",
            "quantity": "1",
            "kind": "adjustment",
            "timestamp": "2025-07-03T12:00:00",
            "reference": "a\tb\\c\nd\\N",
        },
    )

    import_bundle(small_bundle)

    assert m.JournalEntry.objects.get(id=4).reference == "a\tb\\c\nd\\N"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_sees_a_progress_bar_for_long_files(small_bundle, monkeypatch):
    from exchange.importers import importer

    monkeypatch.setattr(importer, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(importer, "PROGRESS_EVERY_LINES", 10)
    terminal = Terminal()

    call_command("import_bundle", str(small_bundle), stdout=terminal)

    assert "fills.jsonl" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_a_last_line_without_newline_is_read_and_trailing_garbage_is_an_error(small_bundle):
    text = (small_bundle / "deposits.jsonl").read_text()
    (small_bundle / "deposits.jsonl").write_text(text.rstrip("\n"))
    import_bundle(small_bundle)
    assert m.Deposit.objects.count() == 4

    first = json.dumps(first_line(small_bundle, "withdrawals.jsonl") | {"id": 7})
    append_line(small_bundle, "withdrawals.jsonl", first + " trailing")

    assert "withdrawals.jsonl, line 10: malformed JSON: Extra data" in failing_import(small_bundle)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
@pytest.mark.parametrize("stored_before", [False, True], ids=["copy into the table", "copy into the stage"])
def test_an_error_in_the_middle_of_a_copy_ends_the_copy_and_the_connection_stays_usable(
    small_bundle, july3_bundle, monkeypatch, stored_before
):
    from exchange.importers.lines import LineParser

    if stored_before:
        import_bundle(july3_bundle)
    append_line(small_bundle, "fills.jsonl", first_line(small_bundle, "fills.jsonl") | {"tradeId": 42})
    parse = LineParser.parse

    def parse_failing_mid_file(self, raw, line_no, errors):
        if self.spec.name == "fills" and line_no == 50:
            raise RuntimeError("a bug, in the middle of a COPY")
        return parse(self, raw, line_no, errors)

    monkeypatch.setattr(LineParser, "parse", parse_failing_mid_file)
    with pytest.raises(RuntimeError, match="a bug"):
        import_bundle(small_bundle)
    monkeypatch.undo()

    import_bundle(small_bundle)

    assert m.Fill.objects.filter(trade_id=42).count() == 1
