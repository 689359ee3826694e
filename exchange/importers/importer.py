"""Importing export bundles into the ledger tables (the spec's export-bundle.md).

How an import runs, in one database transaction:

1. Every line of every file is parsed and validated in Python (one pass, streaming)
   and staged into a temporary table: COPY on PostgreSQL, batched inserts on SQLite.
2. If any line is invalid, nothing goes further: the transaction is rolled back and
   the errors (file, line, key, problem) are reported.
3. Each staged file goes into its table with one set-based
   `INSERT ... SELECT ... ON CONFLICT DO NOTHING`. When fewer rows went in than were
   staged, some identities existed already (or repeat inside the file): one join
   then looks for the ones whose values differ. Any such conflict rolls the whole
   import back, so the ledger tables are exactly as before.

A file whose content (SHA-256 of its uncompressed bytes) was already imported by a
successful run is not read again: the ledger is append-only, so its lines are
all present. `--recheck` reads it anyway.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

try:
    from psycopg.errors import UniqueViolation
except ImportError:  # pragma: no cover - psycopg is in requirements.txt; SQLite never raises it here

    class UniqueViolation(Exception):
        pass


from exchange import models as m

from .archives import BundleLayoutError, ExpansionLimit, Member, MemberUnreadable, open_bundle
from .errors import MAX_REPORTED_ERRORS, BundleError, BundleInvalid, ErrorLog
from .lines import LineParser, line_too_long, numbered_lines
from .specs import SPECS, SPECS_BY_FILENAME, FileSpec, KnownValues
from .staging import create_stage, find_conflicts, insert_staged, open_stage, stage_table
from .values import SIGNIFICANT_DIGITS_SQLITE

PROGRESS_MIN_BYTES = 4 << 20  # smaller files are done before a bar would help
PROGRESS_EVERY_LINES = 65536


@dataclass
class FileResult:
    name: str
    member: str = ""
    sha256: str = ""
    lines_read: int = 0
    inserted: int = 0
    skipped_as_unchanged: bool = False

    @property
    def already_present(self) -> int:
        return self.lines_read - self.inserted


@dataclass
class ImportResult:
    run: m.ImportRun
    files: list[FileResult] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(f.inserted for f in self.files)


class Progress:
    """A progress bar on a terminal; silent otherwise."""

    def __init__(self, out: TextIO | None, label: str, total_bytes: int):
        self.out = out if out is not None and out.isatty() and total_bytes > PROGRESS_MIN_BYTES else None
        self.label, self.total, self.shown = label, max(total_bytes, 1), -1

    def update(self, done_bytes: int) -> None:
        if self.out is None:
            return
        percent = min(100, done_bytes * 100 // self.total)
        if percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            self.out.write(f"\r  {self.label:<26} [{bar:<25}] {percent:3d}%")
            self.out.flush()

    def finish(self) -> None:
        if self.out is not None:
            self.out.write("\r" + " " * 70 + "\r")
            self.out.flush()


def _unchanged_before(name: str, sha256: str) -> m.ImportFile | None:
    return (
        m.ImportFile.objects.filter(name=name, sha256=sha256, run__status=m.ImportRun.Status.SUCCEEDED)
        .order_by("run_id")
        .first()
    )


class BundleImport:
    """One import, inside one transaction (see the module docstring)."""

    def __init__(self, *, run: m.ImportRun, cursor, out: TextIO | None):
        self.run, self.cursor, self.out = run, cursor, out
        self.known = KnownValues()
        self.errors = ErrorLog()
        self.staged: list[tuple[FileSpec, FileResult]] = []

    def take(self, spec: FileSpec, member: Member, *, recheck: bool) -> FileResult:
        """Read one file of the bundle, unless an earlier import stored this exact content."""
        result = FileResult(name=spec.filename, member=member.where)
        try:
            result.sha256, size = member.digest()
        except MemberUnreadable as exc:
            self.errors.add(exc.error())
            return result
        earlier = None if recheck else _unchanged_before(spec.filename, result.sha256)
        if earlier is not None:
            result.lines_read = earlier.lines_read
            result.skipped_as_unchanged = True
            return result
        self.read(spec, member, size, result)
        return result

    def read(self, spec: FileSpec, member: Member, size: int, result: FileResult) -> None:
        """Validate every line; stage them, or COPY them straight into an empty table."""
        if connection.vendor == "postgresql" and not spec.model.objects.exists():
            # Nothing stored can conflict, so the rows go straight in (no staging, no
            # second insert); the transaction still holds them until the whole bundle
            # is known to be valid. A repeated identity inside the file makes COPY
            # fail: then the file is read again through the stage table.
            errors_before = self.errors.total
            savepoint = transaction.savepoint()
            try:
                self._read_into(spec, member, size, result, run_id=self.run.id)
            except UniqueViolation:
                transaction.savepoint_rollback(savepoint)
                if self.errors.total > errors_before:
                    return  # the bundle is refused anyway; its errors are already listed
            else:
                transaction.savepoint_commit(savepoint)
                result.inserted = result.lines_read
                return
        create_stage(self.cursor, spec)
        self._read_into(spec, member, size, result)
        self.staged.append((spec, result))

    def _read_into(
        self, spec: FileSpec, member: Member, size: int, result: FileResult, *, run_id: int | None = None
    ) -> None:
        progress = Progress(self.out, spec.filename, size)
        with member.open() as stream, open_stage(self.cursor, spec, run_id=run_id) as stage:
            result.lines_read = self._stage_lines(spec, stream, stage, progress)
        progress.finish()
        if result.lines_read == 0 and spec.required:
            self.errors.add(BundleError(spec.filename, None, None, "the file is empty, but it is required"))

    def _stage_lines(self, spec: FileSpec, stream, stage, progress: Progress) -> int:
        """Validate each line, and stage it while the bundle is still valid; the lines read (not
        counting blank ones). A line too long, or a member found damaged, ends the file."""
        parser = LineParser(
            spec,
            self.known,
            max_significant_digits=SIGNIFICANT_DIGITS_SQLITE if connection.vendor == "sqlite" else None,
        )
        learns = spec.name in ("accounts", "assets", "markets")
        names = [c.name for c in spec.columns]
        line_errors: list[tuple[int, str | None, str]] = []
        max_bytes = settings.IMPORT_MAX_LINE_BYTES
        read = done_bytes = 0
        try:
            for line_no, raw in numbered_lines(stream, max_bytes):
                done_bytes += len(raw)
                if len(raw) > max_bytes and raw[-1] != 0x0A:  # cut short by numbered_lines: too long
                    read += 1
                    self.errors.add(BundleError(spec.filename, line_no, None, line_too_long(max_bytes)))
                    break
                if raw.isspace():
                    continue  # blank lines are allowed and skipped
                read += 1
                row = parser.parse(raw, line_no, line_errors)
                if row is None:
                    for n, key, problem in line_errors:
                        self.errors.add(BundleError(spec.filename, n, key, problem))
                    line_errors.clear()
                    continue
                if learns:
                    self.known.learn(spec, dict(zip(names, row)))
                if not self.errors.total:  # once anything is wrong, only keep validating
                    stage.add(line_no, row)
                if not read % PROGRESS_EVERY_LINES:
                    progress.update(done_bytes)
        except MemberUnreadable as exc:
            self.errors.add(exc.error())
        progress.update(done_bytes)
        return read

    def insert_staged(self) -> None:
        """Move staged rows into the ledger; an identity stored with other values is a conflict."""
        for spec, result in self.staged:
            result.inserted = insert_staged(self.cursor, spec, self.run.id)
            if result.inserted < result.lines_read:
                room = MAX_REPORTED_ERRORS - len(self.errors.reported) + 1
                for conflict in find_conflicts(self.cursor, spec, self.run.id, room):
                    self.errors.add(conflict)
            self.cursor.execute(f"DROP TABLE IF EXISTS {stage_table(spec)}")


def bundle_import(
    *, path: str | Path, imported_by: str, recheck: bool = False, out: TextIO | None = None
) -> ImportResult:
    """Import one bundle; raises BundleInvalid (and writes nothing) when anything is wrong."""
    started_at = timezone.now()
    try:
        with transaction.atomic():
            return _import(path=path, imported_by=imported_by, recheck=recheck, out=out, started_at=started_at)
    except BundleInvalid as exc:
        _record_failure(path, imported_by, started_at, exc.errors, exc.total)
        raise
    except BundleLayoutError as exc:
        error = exc.error(path)
        _record_failure(path, imported_by, started_at, [error], 1)
        raise BundleInvalid([error], 1) from exc


def _record_failure(path, imported_by: str, started_at: datetime, errors: list[BundleError], total: int) -> None:
    m.ImportRun.objects.create(
        started_at=started_at,
        finished_at=timezone.now(),
        imported_by=imported_by,
        source=str(path)[:1000],
        status=m.ImportRun.Status.FAILED,
        error_count=total,
        errors="\n".join(map(str, errors)),
    )


def _import(*, path, imported_by: str, recheck: bool, out: TextIO | None, started_at: datetime) -> ImportResult:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # One import at a time: a second waits, then sees the first's rows. COPY
            # reads naive timestamps in the session's zone, which must be UTC.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('claimdesk.import_bundle'))")
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    run = m.ImportRun.objects.create(
        started_at=started_at,
        finished_at=started_at,
        imported_by=imported_by,
        source=str(path)[:1000],
        status=m.ImportRun.Status.SUCCEEDED,
    )
    result = ImportResult(run=run)
    limit = ExpansionLimit(ratio=settings.IMPORT_MAX_EXPANSION_RATIO, minimum=settings.IMPORT_MIN_EXPANSION_BYTES)
    with open_bundle(path, limit) as members, connection.cursor() as cursor:
        work = BundleImport(run=run, cursor=cursor, out=out)
        for name in sorted(set(members) - set(SPECS_BY_FILENAME)):
            if out is not None:
                out.write(f"{members[name].where}: not a bundle file, ignored\n")
        for spec in SPECS:
            member = members.get(spec.filename)
            if member is None:
                if spec.required:
                    work.errors.add(BundleError(spec.filename, None, None, "the file is missing, but it is required"))
                continue
            result.files.append(work.take(spec, member, recheck=recheck))
        work.errors.raise_if_any()
        work.insert_staged()
        work.errors.raise_if_any()
    m.ImportFile.objects.bulk_create(
        m.ImportFile(
            run=run,
            name=f.name,
            member=f.member,
            sha256=f.sha256,
            lines_read=f.lines_read,
            inserted=f.inserted,
            already_present=f.already_present,
            skipped_as_unchanged=f.skipped_as_unchanged,
        )
        for f in result.files
    )
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    return result


def report_lines(result: ImportResult) -> Iterable[str]:
    width = max((len(f.name) for f in result.files), default=0)
    for f in result.files:
        note = "  (unchanged since an earlier import; not read again)" if f.skipped_as_unchanged else ""
        yield (
            f"{f.name:<{width}}  {f.lines_read:>10} read  {f.inserted:>10} inserted  "
            f"{f.already_present:>10} already present{note}"
        )
    if result.inserted == 0:
        yield f"Import #{result.run.pk}: nothing new, every line was already present; nothing was written."
    else:
        yield f"Import #{result.run.pk}: {result.inserted} rows inserted."
