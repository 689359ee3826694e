"""Finding the files of an export bundle: a folder, a .zip or a .tar.gz.

An archive (or a folder) holds the files at its root or in one folder; any file
may be gzipped (`fills.jsonl.gz`), but not present in both forms.

Bundles come from outside, so reading one is bounded: a compressed file expands to at
most `ExpansionLimit.allowance` bytes (a compression bomb stops there), no single read
asks for more than MAX_READ bytes, and only regular files inside the bundle are read
(no links, devices or names that climb out with `..`). A file that cannot be read
raises MemberUnreadable, which names it.
"""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import BundleError

CHUNK = 1 << 20
MAX_READ = 16 << 20  # tarfile reads a pax or long-name header whole: its declared size must not decide memory
ANCHOR = "accounts.jsonl"

# What reading a damaged file raises, from gzip, zlib, zipfile, tarfile, bz2, lzma or the OS
# (zipfile lets struct.error, and ValueError for a name that is not UTF-8, through).
READ_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    tarfile.TarError,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    ValueError,
)


class BundleLayoutError(Exception):
    """The bundle as a whole cannot be read (not found, not an archive, both forms of a file)."""

    def error(self, path) -> BundleError:
        return BundleError(str(path), None, None, str(self))


class MemberUnreadable(BundleLayoutError):
    """One file of the bundle cannot be read, or not safely; `where` names it."""

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}")

    def error(self, path=None) -> BundleError:
        return BundleError(self.where, None, None, self.problem)


@dataclass(frozen=True)
class ExpansionLimit:
    """How far a compressed file may expand: `ratio` times its compressed size, or `minimum` bytes."""

    ratio: int
    minimum: int

    def allowance(self, compressed_size: int) -> int:
        return max(self.ratio * compressed_size, self.minimum)

    def refusal(self, compressed_size: int) -> str:
        return (
            f"expands to more than {self.ratio} times its compressed size ({compressed_size:,} bytes, "
            f"stopped after {self.allowance(compressed_size):,}); see IMPORT_MAX_EXPANSION_RATIO"
        )


UNLIMITED = ExpansionLimit(ratio=1 << 40, minimum=0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "is truncated (its compressed data ends early)"
    if isinstance(exc, (zlib.error, gzip.BadGzipFile, zipfile.BadZipFile, lzma.LZMAError)):
        return f"is damaged ({exc})"
    return f"cannot be read ({type(exc).__name__}: {exc})"


class CappedStream(io.RawIOBase):
    """The bytes of `source` up to `allowance`, past which it refuses to read; any failure to
    read is a MemberUnreadable naming `where`. Seekable when `source` is (tarfile seeks)."""

    def __init__(self, source: BinaryIO, *, where: str, allowance: int, refusal: str, also_close=()):
        super().__init__()
        self._source, self._where, self._allowance, self._refusal = source, where, allowance, refusal
        self._also_close = also_close
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._source.seekable()

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_READ:
            raise MemberUnreadable(
                self._where,
                f"holds a header or block of {size:,} bytes, more than the "
                f"{MAX_READ:,} read at once; refused as damaged or hostile",
            )
        return super().read(size)

    def readinto(self, buffer) -> int:
        room = self._allowance + 1 - self._position  # one byte past the allowance proves it exceeded
        if room <= 0:
            raise MemberUnreadable(self._where, self._refusal)
        count = self._guarded(self._source.readinto, memoryview(buffer)[:room])
        self._position += count
        if self._position > self._allowance:
            raise MemberUnreadable(self._where, self._refusal)
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset > self._allowance:
            raise MemberUnreadable(self._where, self._refusal)  # seeking forward decompresses everything skipped
        self._position = self._guarded(self._source.seek, offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            for stream in (self._source, *self._also_close):
                stream.close()
        super().close()

    def _guarded(self, method, *args):
        try:
            return method(*args)
        except READ_ERRORS as exc:
            raise MemberUnreadable(self._where, _describe(exc)) from exc


@dataclass
class Member:
    name: str  # the canonical file name, e.g. "fills.jsonl"
    where: str  # where it was found, for messages and the audit record
    open_raw: Callable[[], BinaryIO]
    compressed_size: int = 0  # what the expansion allowance is reckoned from
    limit: ExpansionLimit = UNLIMITED

    def open(self) -> BinaryIO:
        """The uncompressed content, bounded (see the module docstring), buffered for readline."""
        allowance = self.limit.allowance(self.compressed_size)
        capped = dict(where=self.where, allowance=allowance, refusal=self.limit.refusal(self.compressed_size))
        try:
            raw = self.open_raw()
        except READ_ERRORS as exc:
            raise MemberUnreadable(self.where, _describe(exc)) from exc
        stream = CappedStream(raw, **capped)
        if self.where.endswith(".gz"):
            stream = CappedStream(gzip.GzipFile(fileobj=stream, mode="rb"), **capped, also_close=(stream,))
        return io.BufferedReader(stream, CHUNK)

    def digest(self) -> tuple[str, int]:
        """SHA-256 and size of the uncompressed content, read in chunks."""
        sha = hashlib.sha256()
        size = 0
        with self.open() as stream:
            while chunk := stream.read(CHUNK):
                sha.update(chunk)
                size += len(chunk)
        return sha.hexdigest(), size


@dataclass
class Entry:
    """One thing found in the bundle: a regular file (with its opener) or something else, named."""

    path: PurePosixPath
    open_raw: Callable[[], BinaryIO] | None  # None: not a regular file
    compressed_size: int = 0
    kind: str = "regular file"


def _canonical(filename: str) -> str | None:
    if filename.endswith(".jsonl.gz"):
        return filename[: -len(".gz")]
    if filename.endswith(".jsonl"):
        return filename
    return None


def _pick_root(paths: list[PurePosixPath], description: str) -> PurePosixPath | None:
    """The folder holding the bundle's files: the root, or the single folder they share."""
    folders = {p.parent for p in paths if _canonical(p.name)}
    folders = {f for f in folders if len(f.parts) <= 1 and not any(part.startswith("__MACOSX") for part in f.parts)}
    # Other .jsonl files may lie beside the bundle's folder (simulate_incident's injected.jsonl):
    # the folder that holds the required accounts.jsonl is the bundle.
    with_accounts = {p.parent for p in paths if _canonical(p.name) == ANCHOR and p.parent in folders}
    if len(with_accounts) == 1:
        return with_accounts.pop()
    if not folders:
        return None
    if len(folders) > 1:
        names = ", ".join(sorted(str(f) or "." for f in folders))
        raise BundleLayoutError(f"{description}: .jsonl files in more than one folder ({names}); expected one")
    return folders.pop()


def _refuse_unsafe(entries: list[Entry]) -> None:
    """Only regular files inside the bundle are read; a link or device posing as a bundle file is an error."""
    for entry in entries:
        if entry.path.is_absolute() or ".." in entry.path.parts:
            raise MemberUnreadable(str(entry.path), "is outside the bundle (an absolute name, or one with '..')")
        if entry.open_raw is None and (_canonical(entry.path.name) or entry.kind == "symbolic link to a folder"):
            raise MemberUnreadable(str(entry.path), f"is a {entry.kind}, not a regular file; it was not read")


def _collect(entries: list[Entry], description: str, limit: ExpansionLimit) -> dict[str, Member]:
    _refuse_unsafe(entries)
    entries = [e for e in entries if e.open_raw is not None]
    root = _pick_root([e.path for e in entries], description)
    members: dict[str, Member] = {}
    if root is None:
        return members
    for entry in sorted(entries, key=lambda e: str(e.path)):
        name = _canonical(entry.path.name)
        if name is None or entry.path.parent != root:
            continue
        if name in members:
            raise BundleLayoutError(f"{description}: both {members[name].where} and {entry.path} are present; keep one")
        members[name] = Member(
            name=name,
            where=str(entry.path),
            open_raw=entry.open_raw,
            compressed_size=entry.compressed_size,
            limit=limit,
        )
    return members


@contextmanager
def open_bundle(path: str | Path, limit: ExpansionLimit = UNLIMITED) -> Iterator[dict[str, Member]]:
    """Yield the bundle's files by canonical name, each opened lazily and streamed."""
    path = Path(path)
    if path.is_dir():
        yield _collect(_folder_entries(path), str(path), limit)
    elif not path.exists():
        raise BundleLayoutError(f"{path}: no such file or folder")
    elif zipfile.is_zipfile(path):
        with _open_archive(zipfile.ZipFile, path, "zip") as archive:
            yield _collect(_zip_entries(archive), str(path), limit)
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        with _open_tar(path, limit) as archive:
            yield _collect(_tar_entries(archive, path, limit), str(path), limit)
    else:
        raise BundleLayoutError(f"{path}: not a folder, a .zip or a .tar.gz")


# --- folders ---


def _folder_entries(root: Path) -> list[Entry]:
    """The files of the folder and of its subfolders, without following symbolic links."""
    entries = []
    for child in _listing(root):
        if child.is_dir(follow_symlinks=False):
            entries.extend(_folder_entry(grandchild, PurePosixPath(child.name)) for grandchild in _listing(child))
        else:
            entries.append(_folder_entry(child, PurePosixPath()))
    return entries


def _listing(folder) -> list[os.DirEntry]:
    with os.scandir(folder) as found:
        return list(found)


def _folder_entry(found: os.DirEntry, parent: PurePosixPath) -> Entry:
    rel = parent / found.name
    if found.is_symlink():  # never followed: it could lead anywhere (/etc/passwd)
        return Entry(rel, None, kind="symbolic link to a folder" if os.path.isdir(found.path) else "symbolic link")
    status = found.stat(follow_symlinks=False)
    if not stat.S_ISREG(status.st_mode):
        return Entry(rel, None, kind="folder" if stat.S_ISDIR(status.st_mode) else _kind(status.st_mode))
    return Entry(rel, lambda p=found.path: _open_regular(p, str(rel)), status.st_size)


def _open_regular(path: str, where: str) -> BinaryIO:
    # O_NOFOLLOW: a file swapped for a link after the listing is still not followed.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MemberUnreadable(where, "is not a regular file; it was not read")
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


# --- archives ---


@contextmanager
def _open_archive(opener, path: Path, kind: str):
    try:
        archive = opener(path)
    except READ_ERRORS as exc:
        raise BundleLayoutError(f"{path}: not a readable {kind} archive ({exc})") from exc
    with archive:
        yield archive


def _zip_entries(archive: zipfile.ZipFile) -> list[Entry]:
    entries = []
    for info in archive.infolist():
        if info.filename.endswith("/"):  # a folder (is_dir() fails on an empty name)
            continue
        if stat.S_ISLNK(info.external_attr >> 16):  # a link made by Unix zip: its content is the target's name
            entries.append(Entry(PurePosixPath(info.filename), None, kind="symbolic link"))
        else:
            entries.append(Entry(PurePosixPath(info.filename), lambda i=info: archive.open(i), info.compress_size))
    return entries


TAR_KINDS = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "device",
    tarfile.BLKTYPE: "device",
    tarfile.FIFOTYPE: "named pipe",
}
TAR_COMPRESSIONS = (  # by magic number, as tarfile's "r:*" would; each reads from a file object
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)


@contextmanager
def _open_tar(path: Path, limit: ExpansionLimit):
    """The tar read through a CappedStream: skipping a member, or reading a header, never
    decompresses more than the allowance of the whole archive."""
    size = path.stat().st_size
    with open(path, "rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        decompress = next((opener for prefix, opener in TAR_COMPRESSIONS if magic.startswith(prefix)), None)
        source = decompress(raw) if decompress else raw
        capped = CappedStream(source, where=str(path), allowance=limit.allowance(size), refusal=limit.refusal(size))
        with capped:
            try:
                archive = tarfile.open(fileobj=capped, mode="r:")
            except READ_ERRORS as exc:
                raise BundleLayoutError(f"{path}: not a readable tar archive ({exc})") from exc
            with archive:
                yield archive


def _tar_entries(archive: tarfile.TarFile, path: Path, limit: ExpansionLimit) -> list[Entry]:
    entries = []
    size = path.stat().st_size  # a member's own compressed size is unknown: it may expand from the archive's
    try:
        for info in archive:  # header by header: each is checked before the next is sought
            name = PurePosixPath(info.name.removeprefix("./"))
            if info.offset_data + info.size > limit.allowance(size):
                raise MemberUnreadable(str(name), limit.refusal(size))
            if info.isfile():
                entries.append(Entry(name, lambda i=info: _tar_member(archive, i), size))
            elif not info.isdir():
                entries.append(Entry(name, None, kind=TAR_KINDS.get(info.type, "special member")))
    except tarfile.TarError as exc:
        raise BundleLayoutError(f"{path}: not a readable tar archive ({exc})") from exc
    return entries


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> BinaryIO:
    stream = archive.extractfile(info)
    if stream is None:  # pragma: no cover - only regular files are listed
        return io.BytesIO()
    return stream
