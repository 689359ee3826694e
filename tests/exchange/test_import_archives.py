"""Issue 9, finding 2: a damaged or hostile member is a clear error naming it, recorded as a
failed import that changed nothing, and import_bundle exits with status 1."""

import gzip
import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from exchange import models as m

from .importing import append_line, import_bundle, import_in_a_process, last_run, ledger_state

pytestmark = pytest.mark.django_db


def refused(bundle: Path) -> tuple[str, m.ImportRun]:
    """The import's error output and its failed ImportRun; it must end in CommandError, status 1."""
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_bundle", str(bundle), stdout=io.StringIO(), stderr=err)
    assert raised.value.returncode == 1
    return err.getvalue() + str(raised.value), m.ImportRun.objects.get(status="failed")


@pytest.fixture
def spoilable(small_bundle, july3_bundle) -> Path:
    """The small bundle over an imported July 3 sample, with one new account: a refused import
    leaves the ledger exactly as the sample left it."""
    import_bundle(july3_bundle)
    append_line(
        small_bundle, "accounts.jsonl", {"userId": 777, "email": "new@example.com", "createdAt": "2025-01-01T00:00:00"}
    )
    return small_bundle


def assert_refused_naming(bundle: Path, member: str, problem: str) -> None:
    before = ledger_state()

    message, run = refused(bundle)

    assert f"{member}: {problem}" in message
    assert f"{member}: {problem}" in run.errors and run.error_count >= 1
    assert ledger_state() == before
    assert not m.Account.objects.filter(user_id=777).exists()


# --- damaged compressed members ---


def truncated_gz(bundle: Path) -> Path:
    (bundle / "fills.jsonl.gz").write_bytes(gzip.compress((bundle / "fills.jsonl").read_bytes())[:-100])
    (bundle / "fills.jsonl").unlink()
    return bundle


def test_a_truncated_gz_is_an_error_naming_it(spoilable):
    assert_refused_naming(truncated_gz(spoilable), "fills.jsonl.gz", "is truncated (its compressed data ends early)")


def test_a_gz_that_is_not_gzip_is_an_error_naming_it(spoilable):
    (spoilable / "fills.jsonl").rename(spoilable / "fills.jsonl.gz")

    assert_refused_naming(spoilable, "fills.jsonl.gz", "is damaged (Not a gzipped file")


def test_a_zip_member_with_a_bad_crc_is_an_error_naming_it(spoilable, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:  # stored, not deflated: the member's bytes are in the file as they are
        for path in sorted(spoilable.iterdir()):
            z.write(path, f"july3/{path.name}")
    data = archive.read_bytes()
    at = data.index(b'"tradeId": 982001')
    archive.write_bytes(data[:at] + data[at:].replace(b"982001", b"982002", 1))

    assert_refused_naming(archive, "july3/fills.jsonl", "is damaged (Bad CRC-32 for file 'july3/fills.jsonl')")


def test_a_truncated_gz_ends_the_command_with_status_1_and_no_traceback(small_bundle, migrated_sqlite, tmp_path):
    db = tmp_path / "db.sqlite3"
    shutil.copy(migrated_sqlite, db)

    status, _, output = import_in_a_process(truncated_gz(small_bundle), db)

    assert status == 1
    assert "fills.jsonl.gz: is truncated (its compressed data ends early)" in output
    assert "Traceback" not in output
    assert last_run(db)[0] == "failed" and last_run(db)[2] == 0


# --- members that are not regular files inside the bundle ---


def tar_with(bundle: Path, target: Path, odd: tarfile.TarInfo, replaces: str | None = None) -> Path:
    """The bundle as a .tar.gz, with `odd` added (in place of the file `replaces`)."""
    with tarfile.open(target, "w:gz") as archive:
        archive.addfile(odd)
        for path in sorted(bundle.iterdir()):
            if path.name != replaces:
                archive.add(path, path.name)
    return target


def tar_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


ODD_TAR_MEMBERS = {
    "hard link": (tar_member("fills.jsonl", tarfile.LNKTYPE, "accounts.jsonl"), "is a hard link, not a regular file"),
    "symbolic link": (
        tar_member("fills.jsonl", tarfile.SYMTYPE, "/etc/passwd"),
        "is a symbolic link, not a regular file",
    ),
    "device": (tar_member("fills.jsonl", tarfile.CHRTYPE), "is a device, not a regular file"),
    "named pipe": (tar_member("fills.jsonl", tarfile.FIFOTYPE), "is a named pipe, not a regular file"),
}


@pytest.mark.parametrize("case", list(ODD_TAR_MEMBERS), ids=list(ODD_TAR_MEMBERS))
def test_a_tar_member_named_like_a_bundle_file_that_is_not_a_regular_file_is_an_error(spoilable, tmp_path, case):
    odd, problem = ODD_TAR_MEMBERS[case]

    assert_refused_naming(
        tar_with(spoilable, tmp_path / "bundle.tar.gz", odd, replaces="fills.jsonl"), "fills.jsonl", problem
    )


def test_a_tar_member_whose_name_climbs_out_of_the_archive_is_an_error(spoilable, tmp_path):
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(spoilable.iterdir(), key=lambda p: p.name != "accounts.jsonl"):
            tar.add(path, f"../{path.name}")

    assert_refused_naming(archive, "../accounts.jsonl", "is outside the bundle")


def test_a_zip_member_whose_name_climbs_out_of_the_archive_is_an_error(spoilable, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(spoilable.iterdir(), key=lambda p: p.name != "accounts.jsonl"):
            z.writestr(zipfile.ZipInfo(f"../{path.name}"), path.read_bytes())

    assert_refused_naming(archive, "../accounts.jsonl", "is outside the bundle")


def test_a_zip_member_that_is_a_symbolic_link_is_an_error(spoilable, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(spoilable.iterdir()):
            if path.name != "fills.jsonl":
                z.write(path, path.name)
        link = zipfile.ZipInfo("fills.jsonl")
        link.external_attr = 0o120777 << 16  # what Info-ZIP's zip -y writes for a link
        z.writestr(link, "/etc/passwd")

    assert_refused_naming(archive, "fills.jsonl", "is a symbolic link, not a regular file")


def test_a_folder_bundle_does_not_follow_a_symbolic_link_out_of_it(spoilable, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (spoilable / "fills.jsonl").rename(outside / "fills.jsonl")  # valid fills: following the link would import them
    (spoilable / "fills.jsonl").symlink_to(outside / "fills.jsonl")

    assert_refused_naming(spoilable, "fills.jsonl", "is a symbolic link, not a regular file")


def test_a_folder_bundle_does_not_follow_a_link_to_a_folder(spoilable, tmp_path):
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "july3").symlink_to(spoilable, target_is_directory=True)

    assert_refused_naming(holder, "july3", "is a symbolic link to a folder, not a regular file")


def test_a_named_pipe_in_a_folder_bundle_is_an_error_and_is_not_opened(spoilable):
    (spoilable / "fills.jsonl").unlink()
    os.mkfifo(spoilable / "fills.jsonl")  # opening it to read would wait for a writer forever

    assert_refused_naming(spoilable, "fills.jsonl", "is a named pipe, not a regular file")


def test_a_zip_whose_member_name_is_not_the_utf8_it_claims_is_an_error(spoilable, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:  # found by the fuzz test: zipfile let UnicodeDecodeError through
        for path in sorted(spoilable.iterdir()):
            z.write(path, path.name)
        z.writestr("café.txt", b"")  # a non-ASCII name: zipfile flags the member's name as UTF-8
    archive.write_bytes(archive.read_bytes().replace("é".encode(), b"\x80\x80"))

    before = ledger_state()

    message, run = refused(archive)

    assert f"{archive}: not a readable zip archive" in message and "can't decode" in run.errors
    assert ledger_state() == before
