"""Issue 9, finding 1: a hostile bundle cannot make the import's memory grow with it.

A line is at most IMPORT_MAX_LINE_BYTES long, and a compressed member expands to at most
IMPORT_MAX_EXPANSION_RATIO times its compressed size (or IMPORT_MIN_EXPANSION_BYTES, if
more), and no read of an archive asks for more than 16 MiB at once (tarfile reads a header
whole). The bombs are generated on the fly, a megabyte at a time, and imported by a
process of its own whose peak memory is measured.
"""

import gzip
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from exchange import models as m

from ..conftest import JULY3
from .importing import (
    append_line,
    failing_import,
    first_line,
    import_bundle,
    import_in_a_process,
    last_run,
    ledger_state,
)

pytestmark = pytest.mark.django_db

MB = 1 << 20
PEAK_LIMIT_MB = 300  # whatever the input
GROWTH_LIMIT_MB = 50  # over the peak of importing the small bundle itself


def long_fill(bundle, length: int) -> str:
    """A valid fill line of exactly `length` bytes, newline excluded (an unknown key pads it)."""
    fill = first_line(bundle, "fills.jsonl") | {"tradeId": 7_000_000, "note": ""}
    padding = length - len(json.dumps(fill))
    return json.dumps(fill | {"note": "x" * padding})


def test_a_line_longer_than_the_limit_is_an_error_naming_file_and_line(small_bundle, july3_bundle, settings):
    import_bundle(july3_bundle)
    before = ledger_state()
    settings.IMPORT_MAX_LINE_BYTES = 4096
    append_line(small_bundle, "fills.jsonl", long_fill(small_bundle, 4097))
    append_line(
        small_bundle, "accounts.jsonl", {"userId": 777, "email": "new@example.com", "createdAt": "2025-01-01T00:00:00"}
    )

    message = failing_import(small_bundle)

    assert "fills.jsonl, line 113: longer than 4096 bytes (IMPORT_MAX_LINE_BYTES)" in message
    assert ledger_state() == before
    run = m.ImportRun.objects.get(status="failed")
    assert "fills.jsonl, line 113: longer than 4096 bytes" in run.errors


def test_a_required_file_whose_first_line_is_too_long_is_not_called_empty(small_bundle, settings):
    settings.IMPORT_MAX_LINE_BYTES = 4096
    accounts = (small_bundle / "accounts.jsonl").read_text()
    (small_bundle / "accounts.jsonl").write_text(json.dumps({"userId": 1, "note": "x" * 5000}) + "\n" + accounts)

    message = failing_import(small_bundle)

    assert "accounts.jsonl, line 1: longer than 4096 bytes" in message
    assert "empty" not in message


def test_a_long_line_that_starts_blank_is_still_too_long(small_bundle, settings):
    settings.IMPORT_MAX_LINE_BYTES = 4096
    append_line(small_bundle, "fills.jsonl", " " * 5000 + long_fill(small_bundle, 100))

    assert "fills.jsonl, line 113: longer than 4096 bytes" in failing_import(small_bundle)


def test_a_line_of_exactly_the_limit_is_read(small_bundle, settings):
    settings.IMPORT_MAX_LINE_BYTES = 4096
    append_line(small_bundle, "fills.jsonl", long_fill(small_bundle, 4096))

    import_bundle(small_bundle)

    assert m.Fill.objects.filter(trade_id=7_000_000).exists()


def gzip_file(path: Path, content: bytes) -> Path:
    with gzip.open(path, "wb") as gz:
        gz.write(content)
    return path


def test_a_gzipped_file_expanding_beyond_the_ratio_is_refused(small_bundle, settings):
    settings.IMPORT_MAX_EXPANSION_RATIO, settings.IMPORT_MIN_EXPANSION_BYTES = 20, 1000
    fills = (small_bundle / "fills.jsonl").read_bytes()
    (small_bundle / "fills.jsonl").unlink()
    # Real fills compress about 8 times; these repeat one line, so they compress far more.
    gzip_file(small_bundle / "fills.jsonl.gz", fills + fills.splitlines(keepends=True)[0] * 3000)

    message = failing_import(small_bundle)

    assert "fills.jsonl.gz: expands to more than 20 times its compressed size" in message
    assert m.Fill.objects.count() == 0
    assert m.ImportRun.objects.get().status == "failed"


def test_a_zip_member_expanding_beyond_the_ratio_is_refused(small_bundle, tmp_path, settings):
    settings.IMPORT_MAX_EXPANSION_RATIO, settings.IMPORT_MIN_EXPANSION_BYTES = 20, 1000
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in small_bundle.iterdir():
            if path.name != "ledger.jsonl":
                z.write(path, f"july3/{path.name}")
        z.writestr("july3/ledger.jsonl", (small_bundle / "ledger.jsonl").read_text() + "\n" * 100_000)

    message = failing_import(archive)

    assert "july3/ledger.jsonl: expands to more than 20 times its compressed size" in message
    assert m.Fill.objects.count() == 0


def test_a_tar_gz_member_expanding_beyond_the_ratio_is_refused_before_it_is_read(small_bundle, tmp_path, settings):
    settings.IMPORT_MAX_EXPANSION_RATIO, settings.IMPORT_MIN_EXPANSION_BYTES = 20, 1000
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in small_bundle.iterdir():
            tar.add(path, path.name)
        zeros = tarfile.TarInfo("zeros.bin")
        zeros.size = 5 * MB
        tar.addfile(zeros, io.BytesIO(bytes(zeros.size)))

    message = failing_import(archive)

    assert "zeros.bin: expands to more than 20 times its compressed size" in message
    assert m.Fill.objects.count() == 0


def test_a_small_file_may_expand_up_to_the_minimum_allowance_whatever_its_ratio(small_bundle, settings):
    settings.IMPORT_MAX_EXPANSION_RATIO, settings.IMPORT_MIN_EXPANSION_BYTES = 20, 1 << 20
    ledger = (small_bundle / "ledger.jsonl").read_bytes() + b"\n" * 200_000  # blank lines are allowed
    (small_bundle / "ledger.jsonl").unlink()
    gzip_file(small_bundle / "ledger.jsonl.gz", ledger)
    assert len(ledger) > 20 * (small_bundle / "ledger.jsonl.gz").stat().st_size

    import_bundle(small_bundle)

    assert m.JournalEntry.objects.count() == 74


# --- bombs, imported by a process of its own ---


@pytest.fixture(scope="module")
def small_bundle_peak_mb(tmp_path_factory, migrated_sqlite) -> int:
    """The peak memory of importing the (harmless) small bundle, in a database of its own."""
    folder = tmp_path_factory.mktemp("baseline")
    shutil.copy(migrated_sqlite, folder / "db.sqlite3")
    bundle = shutil.copytree(JULY3 / "bundle", folder / "bundle", ignore=shutil.ignore_patterns("mark_prices*"))
    status, peak_mb, output = import_in_a_process(bundle, folder / "db.sqlite3")
    assert status == 0, output
    return peak_mb


def write_repeated(stream, chunk: bytes, total: int) -> None:
    for _ in range(total // len(chunk)):
        stream.write(chunk)


def zip_of_zeros(bundle: Path, target: Path) -> Path:
    """The bundle with a fills.jsonl of 200 MB of zero bytes and no newline (about 200 KB zipped)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for path in bundle.iterdir():
            if path.name != "fills.jsonl":
                z.write(path, path.name)
        with z.open("fills.jsonl", "w", force_zip64=True) as member:
            write_repeated(member, bytes(MB), 200 * MB)
    return target


def gz_of_digits(bundle: Path, target: Path) -> Path:
    """The bundle with a fills.jsonl.gz of 200 MB of "0" and no newline."""
    shutil.copytree(bundle, target)
    (target / "fills.jsonl").unlink()
    with gzip.open(target / "fills.jsonl.gz", "wb") as gz:
        write_repeated(gz, b"0" * MB, 200 * MB)
    return target


def one_long_line(bundle: Path, target: Path) -> Path:
    """The bundle with a plain fills.jsonl whose first line is 50 MB long."""
    shutil.copytree(bundle, target)
    with open(target / "fills.jsonl", "wb") as fills:
        fills.write(b'{"note": "')
        write_repeated(fills, b"x" * MB, 50 * MB)
        fills.write(b'"}\n')
    return target


def many_long_bad_values(bundle: Path, target: Path) -> Path:
    """The bundle with 150 more fills, each with a price of a million digits: an error each."""
    shutil.copytree(bundle, target)
    fill = json.loads((bundle / "fills.jsonl").read_text().splitlines()[0])
    with open(target / "fills.jsonl", "a") as fills:
        for trade_id in range(150):
            fills.write(json.dumps(fill | {"tradeId": trade_id, "price": "9" * 1_000_000}) + "\n")
    return target


def tar_with_a_huge_header(bundle: Path, target: Path) -> Path:
    """The bundle as a .tar.gz whose first header, a pax extended header, is 100 MB long."""
    size = 100 * MB
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, size
    prefix = f"{size} comment=".encode()  # a pax record is "<length> <key>=<value>\n", its length counting itself
    with gzip.open(target, "wb") as gz:
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT) + prefix)
        write_repeated(gz, b"x" * (size - len(prefix) - 1), size - len(prefix) - 1)
        gz.write(b"\n" + bytes(-size % tarfile.BLOCKSIZE))
        with tarfile.open(fileobj=gz, mode="w") as archive:
            for path in bundle.iterdir():
                archive.add(path, path.name)
    return target


BOMBS = {
    "zip of zeros": (zip_of_zeros, {}, "fills.jsonl: expands to more than 200 times its compressed size"),
    "gz of digits": (gz_of_digits, {}, "fills.jsonl.gz: expands to more than 200 times its compressed size"),
    "50 MB line": (one_long_line, {}, "fills.jsonl, line 1: longer than 1048576 bytes"),
    # Each error quotes its value shortened: 100 errors kept, each quoting a megabyte, did not fit.
    "150 long bad values": (many_long_bad_values, {}, "(1000000 characters) has more than 20 digits"),
    "tar.gz with a 100 MB header": (tar_with_a_huge_header, {}, "more than the 16,777,216 read at once"),
    # With the ratio cap lifted, the line cap alone still bounds memory.
    "gz of digits, line cap only": (
        gz_of_digits,
        {"IMPORT_MAX_EXPANSION_RATIO": "100000"},
        "fills.jsonl, line 1: longer than 1048576 bytes",
    ),
}


@pytest.mark.parametrize("case", list(BOMBS), ids=list(BOMBS))
def test_a_bomb_is_refused_early_with_memory_bounded(
    small_bundle, tmp_path, migrated_sqlite, small_bundle_peak_mb, case
):
    make, env, problem = BOMBS[case]
    suffix = {zip_of_zeros: ".zip", tar_with_a_huge_header: ".tar.gz"}.get(make, "")
    bomb = make(small_bundle, tmp_path / f"bomb{suffix}")

    status, peak_mb, output = import_in_a_process(bomb, migrated_sqlite, **env)

    print(f"{case}: exit {status}, peak {peak_mb} MB (small bundle: {small_bundle_peak_mb} MB)")  # pytest -s
    assert status == 1, output
    assert problem in output
    assert peak_mb < PEAK_LIMIT_MB
    assert peak_mb < small_bundle_peak_mb + GROWTH_LIMIT_MB
    run_status, errors, stored = last_run(migrated_sqlite)
    assert run_status == "failed" and problem in errors
    assert stored == 0
