"""Issue 9, finding 4: whatever a line or an archive holds, the import succeeds or refuses the
bundle with its own error (BundleInvalid, each error naming its file, and its line when it is
about one); it never ends in any other exception.

Each example runs the whole import (parse, stage, insert) in a savepoint that is rolled back,
so examples do not see each other's rows. The example counts are modest: the suite stays fast.
"""

import gzip
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.importers import SPECS, BundleError, BundleInvalid, bundle_import

from ..conftest import JULY3

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REQUIRED = ("accounts.jsonl", "assets.jsonl", "markets.jsonl")
SAMPLE = {spec.filename: (JULY3 / "bundle" / spec.filename) for spec in SPECS}
SAMPLE["mark_prices.jsonl"] = JULY3 / "bundle" / "mark_prices.jsonl.gz"


def sample_lines(filename: str, count: int) -> list[bytes]:
    opener = gzip.open if SAMPLE[filename].suffix == ".gz" else open
    with opener(SAMPLE[filename], "rb") as stream:
        return [next(stream) for _ in range(count)]


def refusal(path: Path) -> list[BundleError] | None:
    """The errors of a refused import, None for a successful one; any other exception escapes."""
    with transaction.atomic():
        try:
            bundle_import(path=path, imported_by="fuzz")
        except BundleInvalid as exc:
            return exc.errors
        finally:
            transaction.set_rollback(True)
    return None


# --- lines ---

STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "USDC", "SOL_USDC", "Bid", "PERP", "x" * 300]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,8})?", fullmatch=True),
    st.just("1" * 5000),  # past Python's 4300 digits for an int
)
INSTANTS = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2025-02-30T00:00:00",
        "2025-07-03T12:04:31.512",
        "2025-07-03T12:04:31Z",
        "2025-07-03 12:04",
    ]
)
SCALARS = st.one_of(
    NUMBERS,
    STRINGS.map(json.dumps),
    INSTANTS.map(json.dumps),
    st.sampled_from(["null", "true", "false", "NaN", "-Infinity"]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(STRINGS.map(json.dumps), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=6,
)


@st.composite
def fuzzed_line(draw, base: dict) -> bytes:
    """A sample line with some values replaced or dropped, perhaps with a few bytes spliced in;
    or bytes of any kind; or deep nesting."""
    kind = draw(st.sampled_from(["values", "values", "values", "bytes", "nesting"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80)).replace(b"\n", b" ")
    if kind == "nesting":
        return b"[" * draw(st.integers(1, 5000))
    fields = {json.dumps(k): json.dumps(v) for k, v in base.items()}
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        fields[key] = draw(JSON_VALUES)
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=1)):
        del fields[key]
    raw = ("{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}").encode()
    at, cut, spliced = draw(st.tuples(st.integers(0, len(raw)), st.integers(0, 3), st.binary(max_size=3)))
    if draw(st.booleans()):
        raw = raw[:at] + spliced.replace(b"\n", b" ") + raw[at + cut :]
    return raw


@FUZZ
@given(filename=st.sampled_from(sorted(SAMPLE)), data=st.data())
def test_any_line_is_imported_or_refused_with_errors_naming_file_and_line(filename, data):
    base = json.loads(sample_lines(filename, 1)[0])
    line = data.draw(fuzzed_line(base), label="line")

    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder)
        for name in REQUIRED:
            (bundle / name).write_bytes((JULY3 / "bundle" / name).read_bytes())
        if filename not in REQUIRED:
            (bundle / filename).write_bytes(b"".join(sample_lines(filename, 2)))
        with open(bundle / filename, "ab") as stream:
            stream.write(line + b"\n")
        errors = refusal(bundle)

    for error in errors or []:
        assert error.file == filename and error.line is not None, str(error)


# --- archives ---


def small_bundle_files() -> dict[str, bytes]:
    files = {name: (JULY3 / "bundle" / name).read_bytes() for name in REQUIRED}
    files["fills.jsonl"] = b"".join(sample_lines("fills.jsonl", 5))
    return files


def as_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(f"bundle/{name}", content)
    return buffer.getvalue()


def as_tar(files: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


ARCHIVES = {
    "bundle.zip": as_zip(small_bundle_files()),
    "bundle.tar.gz": as_tar(small_bundle_files(), "w:gz"),
    "bundle.tar": as_tar(small_bundle_files(), "w"),  # its headers as they are, not compressed
    "fills.jsonl.gz": gzip.compress(small_bundle_files()["fills.jsonl"]),  # one gzipped file of a folder
}


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """The bytes with a few of them overwritten, and perhaps cut short."""
    data = bytearray(original)
    # Anywhere, or in the last bytes: a zip's directory of members is at its end.
    anywhere = st.one_of(st.integers(0, len(data) - 1), st.integers(max(0, len(data) - 200), len(data) - 1))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(anywhere)] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@FUZZ
@given(name=st.sampled_from(sorted(ARCHIVES)), data=st.data())
def test_any_damaged_archive_is_imported_or_refused_with_errors_naming_a_file(name, data):
    content = data.draw(damaged(ARCHIVES[name]), label="content")

    with tempfile.TemporaryDirectory() as folder:
        if name == "fills.jsonl.gz":
            for required, required_content in small_bundle_files().items():
                if required in REQUIRED:
                    (Path(folder) / required).write_bytes(required_content)
        (Path(folder) / name).write_bytes(content)
        errors = refusal(Path(folder) if name == "fills.jsonl.gz" else Path(folder) / name)

    for error in errors or []:
        assert error.file and error.problem, str(error)
