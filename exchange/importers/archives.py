"""Finding the files of an export bundle: a folder, a .zip or a .tar.gz.

An archive (or a folder) holds the files at its root or in one folder; any file
may be gzipped (`fills.jsonl.gz`), but not present in both forms.
"""

import gzip
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

CHUNK = 1 << 20
ANCHOR = "accounts.jsonl"


@dataclass
class Member:
    name: str  # the canonical file name, e.g. "fills.jsonl"
    where: str  # where it was found, for messages and the audit record
    open_raw: Callable[[], BinaryIO]

    def open(self) -> BinaryIO:
        raw = self.open_raw()
        if self.where.endswith(".gz"):
            return gzip.GzipFile(fileobj=raw, mode="rb")
        return raw

    def digest(self) -> tuple[str, int]:
        """SHA-256 and size of the uncompressed content, read in chunks."""
        sha = hashlib.sha256()
        size = 0
        with self.open() as stream:
            while chunk := stream.read(CHUNK):
                sha.update(chunk)
                size += len(chunk)
        return sha.hexdigest(), size


class BundleLayoutError(Exception):
    """The bundle as a whole cannot be read (not found, not an archive, both forms of a file)."""


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


def _collect(entries: list[tuple[PurePosixPath, Callable[[], BinaryIO]]], description: str) -> dict[str, Member]:
    root = _pick_root([p for p, _ in entries], description)
    members: dict[str, Member] = {}
    if root is None:
        return members
    for path, opener in sorted(entries, key=lambda e: str(e[0])):
        name = _canonical(path.name)
        if name is None or path.parent != root:
            continue
        if name in members:
            raise BundleLayoutError(f"{description}: both {members[name].where} and {path} are present; keep one")
        members[name] = Member(name=name, where=str(path), open_raw=opener)
    return members


@contextmanager
def open_bundle(path: str | Path) -> Iterator[dict[str, Member]]:
    """Yield the bundle's files by canonical name, each opened lazily and streamed."""
    path = Path(path)
    if path.is_dir():
        entries = []
        for child in path.iterdir():
            if child.is_file():
                entries.append((PurePosixPath(child.name), lambda c=child: open(c, "rb")))
            elif child.is_dir():
                for grandchild in child.iterdir():
                    if grandchild.is_file():
                        rel = PurePosixPath(child.name, grandchild.name)
                        entries.append((rel, lambda c=grandchild: open(c, "rb")))
        yield _collect(entries, str(path))
    elif not path.exists():
        raise BundleLayoutError(f"{path}: no such file or folder")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            entries = [
                (PurePosixPath(info.filename), lambda i=info: archive.open(i))
                for info in archive.infolist()
                if not info.is_dir()
            ]
            yield _collect(entries, str(path))
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            archive = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as exc:
            raise BundleLayoutError(f"{path}: not a readable tar archive ({exc})") from exc
        with archive:
            entries = []
            for info in archive.getmembers():
                if info.isfile():
                    name = PurePosixPath(info.name.removeprefix("./"))
                    entries.append((name, lambda i=info: _tar_member(archive, i)))
            yield _collect(entries, str(path))
    else:
        raise BundleLayoutError(f"{path}: not a folder, a .zip or a .tar.gz")


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> BinaryIO:
    stream = archive.extractfile(info)
    if stream is None:  # pragma: no cover - only regular files are listed
        return io.BytesIO()
    return stream
