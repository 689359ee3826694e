"""Staging: where parsed rows wait until the whole bundle is known to be valid, and how
they then move into the ledger (COPY on PostgreSQL, batched INSERTs elsewhere)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from .errors import BundleError
from .specs import FileSpec
from .values import shortened

STAGE_BATCH = 2000


def _table(spec: FileSpec) -> str:
    return spec.model._meta.db_table


def _column(spec: FileSpec, name: str) -> str:
    return spec.model._meta.get_field(name).column


def stage_table(spec: FileSpec) -> str:
    return f"import_stage_{spec.name}"


def create_stage(cursor, spec: FileSpec) -> None:
    qn = connection.ops.quote_name
    columns = ", ".join(
        f"{qn(_column(spec, c.name))} {spec.model._meta.get_field(c.name).db_type(connection)}" for c in spec.columns
    )
    cursor.execute(f"DROP TABLE IF EXISTS {stage_table(spec)}")
    cursor.execute(f"CREATE TEMPORARY TABLE {stage_table(spec)} (line bigint NOT NULL, {columns})")


COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    if value is None:
        return ""  # COPY runs with NULL '': every string column refuses "", so "" is free to mean NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if type(value) is datetime:
        return value.isoformat()
    if type(value) is str:
        return value.translate(COPY_ESCAPES)
    return str(value)


@contextmanager
def open_stage(cursor, spec: FileSpec, *, run_id: int | None = None) -> Iterator["CopyStage | BatchStage"]:
    """Where a file's rows go while it is read: its stage table (create_stage first), or, with
    `run_id` (PostgreSQL), straight into its ledger table, stamped with the import run.

    A COPY lasts as long as the block. An error inside it ends the COPY with that error, so
    the server drops the rows and the connection leaves COPY mode: left in it, the rollback
    that follows would wait for COPY data for ever.
    """
    if connection.vendor != "postgresql":
        stage = BatchStage(cursor, spec)
        yield stage
        stage.flush()
        return
    table, columns = _copy_target(spec, run_id)
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (NULL '')") as copy:
        stage = CopyStage(copy, spec, run_id=run_id)
        yield stage
        stage.flush()


def _copy_target(spec: FileSpec, run_id: int | None) -> tuple[str, list[str]]:
    qn = connection.ops.quote_name
    columns = [qn(_column(spec, c.name)) for c in spec.columns]
    if run_id is None:
        return stage_table(spec), ["line", *columns]
    return qn(_table(spec)), [*columns, qn(spec.model._meta.get_field("import_run").column)]


class CopyStage:
    """PostgreSQL: rows are streamed with COPY, a batch of lines at a time (see open_stage)."""

    def __init__(self, copy, spec: FileSpec, *, run_id: int | None):
        self._copy = copy
        if run_id is None:
            self._prefix, self._suffix = True, "\n"  # the stage table's first column is the line number
        else:
            self._prefix, self._suffix = False, f"\t{run_id}\n"
        self._buffer: list[str] = []
        self._nullable = [i for i, c in enumerate(spec.columns) if not c.required]
        self._tabs = len(spec.columns) - 1

    def add(self, line_no: int, row: list | tuple) -> None:
        # Values are text, ints, booleans (PostgreSQL reads "True") or datetimes; only
        # optional columns can be None, and only a rare string needs COPY's escapes.
        parts = list(map(str, row))
        for i in self._nullable:
            if row[i] is None:
                parts[i] = ""
        body = "\t".join(parts)
        if body.count("\t") != self._tabs or "\n" in body or "\\" in body or "\r" in body:
            body = "\t".join(map(_copy_text, row))
        self._buffer.append(f"{line_no}\t{body}{self._suffix}" if self._prefix else body + self._suffix)
        if len(self._buffer) >= STAGE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._copy.write("".join(self._buffer))
            self._buffer.clear()


class BatchStage:
    """SQLite (and any other database): batched INSERTs into the stage table."""

    def __init__(self, cursor, spec: FileSpec):
        qn = connection.ops.quote_name
        self._cursor = cursor
        self._fields = [spec.model._meta.get_field(c.name) for c in spec.columns]
        columns = ", ".join(["line"] + [qn(f.column) for f in self._fields])
        marks = ", ".join(["%s"] * (len(self._fields) + 1))
        self._sql = f"INSERT INTO {stage_table(spec)} ({columns}) VALUES ({marks})"
        self._buffer: list[list] = []

    def add(self, line_no: int, row: tuple) -> None:
        prepared = [line_no]
        for model_field, value in zip(self._fields, row):
            prepared.append(None if value is None else model_field.get_db_prep_save(value, connection))
        self._buffer.append(prepared)
        if len(self._buffer) >= STAGE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._cursor.executemany(self._sql, self._buffer)
            self._buffer.clear()


# --- moving staged rows into the ledger ---


def insert_staged(cursor, spec: FileSpec, run_id: int) -> int:
    qn = connection.ops.quote_name
    columns = ", ".join(qn(_column(spec, c.name)) for c in spec.columns)
    run_column = qn(spec.model._meta.get_field("import_run").column)
    # "WHERE true" keeps SQLite's parser from reading ON CONFLICT as part of a join.
    cursor.execute(
        f"INSERT INTO {qn(_table(spec))} ({columns}, {run_column}) "
        f"SELECT {columns}, %s FROM {stage_table(spec)} WHERE true ON CONFLICT DO NOTHING",
        [run_id],
    )
    return cursor.rowcount


def find_conflicts(cursor, spec: FileSpec, run_id: int, limit: int) -> list[BundleError]:
    """Staged lines whose identity is stored with other values (compared as values: 1.5 = 1.50)."""
    qn = connection.ops.quote_name
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    table = qn(_table(spec))
    on = " AND ".join(f"s.{qn(_column(spec, n))} = t.{qn(_column(spec, n))}" for n in spec.identity)
    value_columns = [c for c in spec.columns if c.name not in spec.identity]
    differs = " OR ".join(
        f"s.{qn(_column(spec, c.name))} {distinct} t.{qn(_column(spec, c.name))}" for c in value_columns
    )
    selected = ", ".join(f"s.{qn(_column(spec, c.name))}, t.{qn(_column(spec, c.name))}" for c in value_columns)
    identity = ", ".join(f"s.{qn(_column(spec, n))}" for n in spec.identity)
    run_column = qn(spec.model._meta.get_field("import_run").column)
    cursor.execute(
        f"SELECT s.line, t.{run_column}, {identity}, {selected} FROM {stage_table(spec)} s "
        f"JOIN {table} t ON {on} WHERE {differs} ORDER BY s.line LIMIT %s",
        [limit],
    )
    conflicts = []
    id_width = len(spec.identity)
    keys = {c.name: c.key for c in spec.columns}
    for row in cursor.fetchall():
        line_no, stored_run, ident, pairs = row[0], row[1], row[2 : 2 + id_width], row[2 + id_width :]
        identity_text = ", ".join(f"{keys[n]}={v}" for n, v in zip(spec.identity, ident))
        diffs = []
        for i, column in enumerate(value_columns):
            new, old = pairs[2 * i], pairs[2 * i + 1]
            if new != old:
                diffs.append(f"{column.key}: {_shown(old)} stored, {_shown(new)} here")
        origin = "another line of this file" if stored_run == run_id else f"import #{stored_run}"
        problem = f"conflict: {identity_text} was already imported by {origin} with other values ({'; '.join(diffs)})"
        conflicts.append(BundleError(spec.filename, line_no, None, problem))
    return conflicts


def _shown(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return shortened(str(value))
