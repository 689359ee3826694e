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

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from django.db import connection, models, transaction

try:
    from psycopg.errors import UniqueViolation
except ImportError:  # pragma: no cover - psycopg is in requirements.txt; SQLite never raises it here
    class UniqueViolation(Exception):
        pass
from django.utils import timezone

from . import models as m
from .bundles import BundleLayoutError, Member, open_bundle

MAX_REPORTED_ERRORS = 100
STAGE_BATCH = 2000
PROGRESS_MIN_BYTES = 4 << 20  # smaller files are done before a bar would help
PROGRESS_EVERY_LINES = 65536
MISSING = object()


@dataclass(frozen=True)
class BundleError:
    file: str
    line: int | None
    key: str | None
    problem: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.key is not None:
            where += f", key '{self.key}'"
        return f"{where}: {self.problem}"


class BundleInvalid(Exception):
    def __init__(self, errors: list[BundleError], total: int):
        self.errors = errors
        self.total = total
        more = f" (showing the first {len(errors)})" if total > len(errors) else ""
        super().__init__(f"{total} error(s){more}; nothing was imported")


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


# --- value parsers: each returns the normalised value or raises ValueError(problem) ---

PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,18})?\Z")
PLAIN_DECIMAL_ANY_SIZE = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?\Z")


def parse_int(value: Any) -> int:
    if type(value) is int:
        return value
    raise ValueError(f"expected an integer, got {json.dumps(value, default=str)}")


def parse_asset_decimals(value: Any) -> int:
    """An asset's precision: 0 to 18 places (amounts are stored with 18)."""
    places = parse_int(value)
    if not 0 <= places <= 18:
        raise ValueError(f"must be between 0 and 18, got {places}")
    return places


def parse_decimal(value: Any) -> str:
    """A decimal as its exact text: a string like "12.5" or a JSON number (never a float)."""
    if type(value) is str:
        text = value
    elif type(value) is int:
        text = str(value)
    elif type(value) is Decimal:  # a JSON number, read from its own text by parse_float=Decimal
        text = format(value, "f")
    else:
        raise ValueError(f"expected a decimal such as \"12.5\", got {json.dumps(value, default=str)}")
    if PLAIN_DECIMAL.match(text):
        return text
    parts = PLAIN_DECIMAL_ANY_SIZE.match(text)
    if not parts:
        raise ValueError(f"{json.dumps(value, default=str)} is not a plain decimal such as \"12.5\"")
    if len(parts.group(1)) > 20:
        raise ValueError(f"{text} has more than 20 digits before the point")
    raise ValueError(f"{text} has more than 18 digits after the point")


def parse_positive_decimal(value: Any) -> str:
    text = parse_decimal(value)
    if Decimal(text) <= 0:
        raise ValueError(f"must be positive, got {text}")
    return text


def parse_instant(value: Any) -> datetime:
    """ISO-8601; naive timestamps are UTC (the spec's convention), others are converted to UTC."""
    if type(value) is str:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    raise ValueError(f"{json.dumps(value, default=str)} is not an ISO-8601 timestamp such as 2025-07-03T12:04:31.512")


def parse_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise ValueError(f"expected true or false, got {json.dumps(value, default=str)}")


def parse_str(value: Any) -> str:
    if type(value) is str and value:
        if "\x00" in value:  # PostgreSQL's text cannot hold it
            raise ValueError("contains a NUL character")
        return value
    raise ValueError(f"expected a non-empty string, got {json.dumps(value, default=str)}")


def parse_str_or_int(value: Any) -> str:
    if type(value) is int:
        return str(value)
    return parse_str(value)


SIGNIFICANT_DIGITS_SQLITE = 15


def significant_digits(text: str) -> int:
    return len(text.lstrip("-").replace(".", "").strip("0"))


# --- what each file holds ---


@dataclass(frozen=True)
class Column:
    key: str  # the JSON key
    name: str  # the model field
    parse: Callable[[Any], Any]
    required: bool = True
    choices: frozenset[str] | None = None
    ref: str | None = None  # the set of known values it must belong to: users, assets, markets, perps


@dataclass(frozen=True)
class FileSpec:
    name: str
    model: type[models.Model]
    columns: tuple[Column, ...]
    identity: tuple[str, ...]
    required: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.jsonl"


def _choices(choices: type[models.TextChoices]) -> frozenset[str]:
    return frozenset(choices.values)


C = Column
SPECS: tuple[FileSpec, ...] = (
    # Order matters: assets, markets and accounts are known before the files that name them.
    FileSpec("assets", m.Asset, (C("symbol", "symbol", parse_str), C("decimals", "decimals", parse_asset_decimals)),
             identity=("symbol",), required=True),
    FileSpec("markets", m.Market, (
        C("symbol", "symbol", parse_str),
        C("baseSymbol", "base_symbol", parse_str, ref="assets"),
        C("quoteSymbol", "quote_symbol", parse_str, ref="assets"),
        C("marketType", "market_type", parse_str, choices=_choices(m.Market.Type)),
    ), identity=("symbol",), required=True),
    FileSpec("accounts", m.Account, (
        C("userId", "user_id", parse_int),
        C("email", "email", parse_str),
        C("createdAt", "created_at", parse_instant),
        C("displayName", "display_name", parse_str, required=False),
        C("locale", "locale", parse_str, required=False),
    ), identity=("user_id",), required=True),
    FileSpec("fills", m.Fill, (
        C("userId", "user_id", parse_int, ref="users"),
        C("tradeId", "trade_id", parse_int),
        C("side", "side", parse_str, choices=_choices(m.Side)),
        C("orderId", "order_id", parse_str_or_int),
        C("symbol", "symbol", parse_str, ref="markets"),
        C("price", "price", parse_decimal),
        C("quantity", "quantity", parse_positive_decimal),
        C("fee", "fee", parse_decimal),
        C("feeSymbol", "fee_symbol", parse_str, ref="assets"),
        C("isMaker", "is_maker", parse_bool),
        C("timestamp", "timestamp", parse_instant),
        C("clientId", "client_id", parse_str_or_int, required=False),
        C("systemOrderType", "system_order_type", parse_str, required=False, choices=_choices(m.SystemOrderType)),
    ), identity=("user_id", "trade_id", "side")),
    FileSpec("withdrawals", m.Withdrawal, (
        C("id", "id", parse_int),
        C("userId", "user_id", parse_int, ref="users"),
        C("symbol", "symbol", parse_str, ref="assets"),
        C("quantity", "quantity", parse_decimal),
        C("fee", "fee", parse_decimal),
        C("status", "status", parse_str, choices=_choices(m.Withdrawal.Status)),
        C("blockchain", "blockchain", parse_str),
        C("toAddress", "to_address", parse_str),
        C("createdAt", "created_at", parse_instant),
        C("isInternal", "is_internal", parse_bool),
        C("transactionHash", "transaction_hash", parse_str, required=False),
    ), identity=("id",)),
    FileSpec("deposits", m.Deposit, (
        C("id", "id", parse_int),
        C("userId", "user_id", parse_int, ref="users"),
        C("symbol", "symbol", parse_str, ref="assets"),
        C("quantity", "quantity", parse_decimal),
        C("source", "source", parse_str, choices=_choices(m.Deposit.Source)),
        C("status", "status", parse_str, choices=_choices(m.Deposit.Status)),
        C("createdAt", "created_at", parse_instant),
        C("transactionHash", "transaction_hash", parse_str, required=False),
        C("withdrawalId", "withdrawal_id", parse_int, required=False),
    ), identity=("id",)),
    FileSpec("ledger", m.JournalEntry, (
        C("id", "id", parse_int),
        C("userId", "user_id", parse_int, ref="users"),
        C("symbol", "symbol", parse_str, ref="assets"),
        C("quantity", "quantity", parse_decimal),
        C("kind", "kind", parse_str, choices=_choices(m.JournalEntry.Kind)),
        C("timestamp", "timestamp", parse_instant),
        C("reference", "reference", parse_str, required=False),
    ), identity=("id",)),
    FileSpec("balance_snapshots", m.BalanceSnapshot, (
        C("userId", "user_id", parse_int, ref="users"),
        C("symbol", "symbol", parse_str, ref="assets"),
        C("total", "total", parse_decimal),
        C("snapshotAt", "snapshot_at", parse_instant),
    ), identity=("user_id", "symbol", "snapshot_at")),
    FileSpec("position_snapshots", m.PositionSnapshot, (
        C("userId", "user_id", parse_int, ref="users"),
        C("symbol", "symbol", parse_str, ref="perps"),
        C("netQuantity", "net_quantity", parse_decimal),
        C("entryPrice", "entry_price", parse_decimal),
        C("snapshotAt", "snapshot_at", parse_instant),
    ), identity=("user_id", "symbol", "snapshot_at")),
    FileSpec("mark_prices", m.MarkPrice, (
        C("symbol", "symbol", parse_str, ref="markets"),
        C("markPrice", "mark_price", parse_decimal),
        C("indexPrice", "index_price", parse_decimal),
        C("timestamp", "timestamp", parse_instant),
    ), identity=("symbol", "timestamp")),
)
SPECS_BY_FILENAME = {spec.filename: spec for spec in SPECS}

REF_DESCRIPTIONS = {
    "users": "userId (not in accounts.jsonl nor imported before)",
    "assets": "asset symbol (not in assets.jsonl nor imported before)",
    "markets": "market symbol (not in markets.jsonl nor imported before)",
    "perps": "PERP market symbol (position snapshots are of PERP markets only)",
}


class KnownValues:
    """The ids other files may name: what the database holds plus what this bundle adds."""

    def __init__(self):
        self.sets: dict[str, set] = {
            "users": set(m.Account.objects.values_list("user_id", flat=True)),
            "assets": set(m.Asset.objects.values_list("symbol", flat=True)),
            "markets": set(m.Market.objects.values_list("symbol", flat=True)),
            "perps": set(m.Market.objects.filter(market_type=m.Market.Type.PERP).values_list("symbol", flat=True)),
        }

    def learn(self, spec: FileSpec, row: dict[str, Any]) -> None:
        if spec.name == "accounts":
            self.sets["users"].add(row["user_id"])
        elif spec.name == "assets":
            self.sets["assets"].add(row["symbol"])
        elif spec.name == "markets":
            self.sets["markets"].add(row["symbol"])
            if row["market_type"] == m.Market.Type.PERP:
                self.sets["perps"].add(row["symbol"])


# --- parsing one file ---


class LineParser:
    """Turns one JSON line into the row for its table, or into BundleErrors.

    Every line first takes a fast path that only answers "valid as it stands?" and
    keeps the values as they came (decimals and timestamps stay text, which is what
    COPY wants). A line it does not accept is parsed again by the careful path,
    which normalises what it can and names each problem; so the error messages live
    in one place, and a million valid lines cost little.
    """

    def __init__(self, spec: FileSpec, known: KnownValues, *, max_significant_digits: int | None):
        self.spec = spec
        self.decoder = json.JSONDecoder(parse_float=Decimal)
        self.scan_once = self.decoder.scan_once
        model_fields = {f.name: f for f in spec.model._meta.get_fields()}
        self.plan = []
        for column in spec.columns:
            max_length = getattr(model_fields[column.name], "max_length", None)
            ref = known.sets[column.ref] if column.ref else None
            is_decimal = column.parse in (parse_decimal, parse_positive_decimal)
            self.plan.append((column, max_length, ref, is_decimal))
        self.max_significant_digits = max_significant_digits
        self.keys = [column.key for column in spec.columns]
        self.fast_checks = None
        if max_significant_digits is None:  # the SQLite digit limit is checked on the careful path only
            checks = [_fast_check(column, max_length, ref) for column, max_length, ref, _ in self.plan]
            if None not in checks:
                self.fast_checks = checks

    def parse(self, raw: bytes, line_no: int, errors: list[tuple[int, str | None, str]]) -> list | tuple | None:
        if self.fast_checks is not None:
            try:
                # The decoder's scanner, without decode()'s whitespace handling: a line that is
                # not one bare object followed by its newline goes to the careful path.
                text = raw.decode("utf-8")
                obj, end = self.scan_once(text, 0)
                if type(obj) is not dict or not text[end:].isspace():
                    return self.parse_carefully(raw, line_no, errors)
                values = list(map(obj.get, self.keys))
                for check, value in zip(self.fast_checks, values):
                    if not check(value):
                        break
                else:
                    return values
            except (ValueError, TypeError, AttributeError, StopIteration):
                pass  # the careful path says what is wrong
        return self.parse_carefully(raw, line_no, errors)

    def parse_carefully(self, raw: bytes, line_no: int, errors: list[tuple[int, str | None, str]]) -> tuple | None:
        try:
            obj = self.decoder.decode(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            errors.append((line_no, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
            return None
        except json.JSONDecodeError as exc:
            errors.append((line_no, None, f"malformed JSON: {exc.msg} at column {exc.colno}"))
            return None
        if type(obj) is not dict:
            errors.append((line_no, None, "expected a JSON object"))
            return None
        values = []
        failed = False
        for column, max_length, ref, is_decimal in self.plan:
            value = obj.get(column.key, MISSING)
            if value is MISSING or value is None:
                if column.required:
                    problem = "missing required key" if value is MISSING else "must not be null"
                    errors.append((line_no, column.key, problem))
                    failed = True
                values.append(None)
                continue
            try:
                value = column.parse(value)
                if column.choices is not None and value not in column.choices:
                    raise ValueError(f"unknown value {value!r}; expected one of {', '.join(sorted(column.choices))}")
                if ref is not None and value not in ref:
                    raise ValueError(f"unknown {REF_DESCRIPTIONS[column.ref]}: {value!r}")
                if max_length is not None and len(value) > max_length:
                    raise ValueError(f"longer than {max_length} characters")
                if is_decimal and self.max_significant_digits and (
                    significant_digits(value) > self.max_significant_digits
                ):
                    raise ValueError(
                        f"{value} has more than {self.max_significant_digits} significant digits, "
                        "which the SQLite demo database cannot store exactly; use PostgreSQL"
                    )
            except ValueError as exc:
                errors.append((line_no, column.key, str(exc)))
                failed = True
                values.append(None)
                continue
            values.append(value)
        return None if failed else tuple(values)


CANONICAL_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?\Z")


def _is_canonical_instant(value: Any) -> bool:
    """Naive UTC as the spec writes it; COPY reads it as is, the session being in UTC."""
    if not CANONICAL_INSTANT.match(value):
        return False
    datetime.fromisoformat(value)  # rejects 2025-02-30 (ValueError goes to the careful path)
    return True


def _is_plain_decimal(value: Any) -> bool:
    return type(value) is str and PLAIN_DECIMAL.match(value) is not None


def _is_positive_decimal(value: Any) -> bool:
    return _is_plain_decimal(value) and value[0] != "-" and value.strip("0.") != ""


def _fast_check(column: Column, max_length: int | None, ref: set | None) -> Callable[[Any], bool] | None:
    """A quick yes/no for one column's value as it stands, or None if this column has none."""
    low, high = -(2**63), 2**63
    if column.parse is parse_int:
        check = (lambda v: type(v) is int and low <= v < high and v in ref) if ref is not None else (
            lambda v: type(v) is int and low <= v < high)
    elif column.parse is parse_decimal:
        check = _is_plain_decimal
    elif column.parse is parse_positive_decimal:
        check = _is_positive_decimal
    elif column.parse is parse_instant:
        check = _is_canonical_instant
    elif column.parse is parse_bool:
        check = lambda v: v is True or v is False  # noqa: E731 - 1 == True, but 1 is not a boolean here
    elif column.parse in (parse_str, parse_str_or_int) and (column.choices is not None or ref is not None):
        check = (column.choices or ref).__contains__  # members are non-empty, short strings
    elif column.parse in (parse_str, parse_str_or_int) and max_length is not None:
        check = lambda v: type(v) is str and 0 < len(v) <= max_length and "\x00" not in v  # noqa: E731
    else:
        return None
    if not column.required:
        required_check = check
        check = lambda v: v is None or required_check(v)  # noqa: E731
    return check


# --- staging: where parsed rows wait until the whole bundle is known to be valid ---


def _table(spec: FileSpec) -> str:
    return spec.model._meta.db_table


def _column(spec: FileSpec, name: str) -> str:
    return spec.model._meta.get_field(name).column


def _stage_table(spec: FileSpec) -> str:
    return f"import_stage_{spec.name}"


def _create_stage(cursor, spec: FileSpec) -> None:
    qn = connection.ops.quote_name
    columns = ", ".join(
        f"{qn(_column(spec, c.name))} {spec.model._meta.get_field(c.name).db_type(connection)}" for c in spec.columns
    )
    cursor.execute(f"DROP TABLE IF EXISTS {_stage_table(spec)}")
    cursor.execute(f"CREATE TEMPORARY TABLE {_stage_table(spec)} (line bigint NOT NULL, {columns})")


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


class CopyStage:
    """PostgreSQL: rows are streamed with COPY, a batch of lines at a time.

    Into the stage table (with line numbers), or, when `run_id` is given, straight into
    the ledger table, stamped with the import run.
    """

    def __init__(self, cursor, spec: FileSpec, *, run_id: int | None = None):
        qn = connection.ops.quote_name
        columns = [qn(_column(spec, c.name)) for c in spec.columns]
        if run_id is None:
            table, columns = _stage_table(spec), ["line", *columns]
            self._prefix, self._suffix = True, "\n"
        else:
            table = qn(_table(spec))
            columns.append(qn(spec.model._meta.get_field("import_run").column))
            self._prefix, self._suffix = False, f"\t{run_id}\n"
        self._copy_cm = cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (NULL '')")
        self._copy = self._copy_cm.__enter__()
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
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._copy.write("".join(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        self._flush()
        self._copy_cm.__exit__(None, None, None)


class BatchStage:
    """SQLite (and any other database): batched INSERTs into the stage table."""

    def __init__(self, cursor, spec: FileSpec):
        qn = connection.ops.quote_name
        self._cursor = cursor
        self._fields = [spec.model._meta.get_field(c.name) for c in spec.columns]
        columns = ", ".join(["line"] + [qn(f.column) for f in self._fields])
        marks = ", ".join(["%s"] * (len(self._fields) + 1))
        self._sql = f"INSERT INTO {_stage_table(spec)} ({columns}) VALUES ({marks})"
        self._buffer: list[list] = []

    def add(self, line_no: int, row: tuple) -> None:
        prepared = [line_no]
        for model_field, value in zip(self._fields, row):
            prepared.append(None if value is None else model_field.get_db_prep_save(value, connection))
        self._buffer.append(prepared)
        if len(self._buffer) >= STAGE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._cursor.executemany(self._sql, self._buffer)
            self._buffer.clear()

    def close(self) -> None:
        self._flush()


# --- moving staged rows into the ledger ---


def _insert_staged(cursor, spec: FileSpec, run_id: int) -> int:
    qn = connection.ops.quote_name
    columns = ", ".join(qn(_column(spec, c.name)) for c in spec.columns)
    run_column = qn(spec.model._meta.get_field("import_run").column)
    # "WHERE true" keeps SQLite's parser from reading ON CONFLICT as part of a join.
    cursor.execute(
        f"INSERT INTO {qn(_table(spec))} ({columns}, {run_column}) "
        f"SELECT {columns}, %s FROM {_stage_table(spec)} WHERE true ON CONFLICT DO NOTHING",
        [run_id],
    )
    return cursor.rowcount


def _find_conflicts(cursor, spec: FileSpec, run_id: int, limit: int) -> list[BundleError]:
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
        f"SELECT s.line, t.{run_column}, {identity}, {selected} FROM {_stage_table(spec)} s "
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
    return str(value)


# --- the import itself ---


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


class ErrorLog:
    """Every problem found, counted; the first MAX_REPORTED_ERRORS kept for the report."""

    def __init__(self):
        self.reported: list[BundleError] = []
        self.total = 0

    def add(self, error: BundleError) -> None:
        self.total += 1
        if len(self.reported) < MAX_REPORTED_ERRORS:
            self.reported.append(error)

    def raise_if_any(self) -> None:
        if self.total:
            raise BundleInvalid(self.reported, self.total)


class BundleImport:
    """One import, inside one transaction (see the module docstring)."""

    def __init__(self, *, run: m.ImportRun, cursor, out: TextIO | None):
        self.run, self.cursor, self.out = run, cursor, out
        self.known = KnownValues()
        self.errors = ErrorLog()
        self.staged: list[tuple[FileSpec, FileResult]] = []

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
                self._read_into(CopyStage(self.cursor, spec, run_id=self.run.id), spec, member, size, result)
            except UniqueViolation:
                transaction.savepoint_rollback(savepoint)
                if self.errors.total > errors_before:
                    return  # the bundle is refused anyway; its errors are already listed
            else:
                transaction.savepoint_commit(savepoint)
                result.inserted = result.lines_read
                return
        _create_stage(self.cursor, spec)
        stage = (CopyStage if connection.vendor == "postgresql" else BatchStage)(self.cursor, spec)
        self._read_into(stage, spec, member, size, result)
        self.staged.append((spec, result))

    def _read_into(self, stage, spec: FileSpec, member: Member, size: int, result: FileResult) -> None:
        parser = LineParser(
            spec, self.known,
            max_significant_digits=SIGNIFICANT_DIGITS_SQLITE if connection.vendor == "sqlite" else None,
        )
        learns = spec.name in ("accounts", "assets", "markets")
        names = [c.name for c in spec.columns]
        progress = Progress(self.out, spec.filename, size)
        line_errors: list[tuple[int, str | None, str]] = []
        read = done_bytes = 0
        with member.open() as stream:
            for line_no, raw in enumerate(stream, 1):
                done_bytes += len(raw)
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
        stage.close()
        progress.update(done_bytes)
        progress.finish()
        result.lines_read = read
        if read == 0 and spec.required:
            self.errors.add(BundleError(spec.filename, None, None, "the file is empty, but it is required"))

    def insert_staged(self) -> None:
        """Move staged rows into the ledger; an identity stored with other values is a conflict."""
        for spec, result in self.staged:
            result.inserted = _insert_staged(self.cursor, spec, self.run.id)
            if result.inserted < result.lines_read:
                room = MAX_REPORTED_ERRORS - len(self.errors.reported) + 1
                for conflict in _find_conflicts(self.cursor, spec, self.run.id, room):
                    self.errors.add(conflict)
            self.cursor.execute(f"DROP TABLE IF EXISTS {_stage_table(spec)}")


def bundle_import(*, path: str | Path, imported_by: str, recheck: bool = False,
                  out: TextIO | None = None) -> ImportResult:
    """Import one bundle; raises BundleInvalid (and writes nothing) when anything is wrong."""
    started_at = timezone.now()
    try:
        with transaction.atomic():
            return _import(path=path, imported_by=imported_by, recheck=recheck, out=out, started_at=started_at)
    except BundleInvalid as exc:
        _record_failure(path, imported_by, started_at, exc.errors, exc.total)
        raise
    except BundleLayoutError as exc:
        error = BundleError(str(path), None, None, str(exc))
        _record_failure(path, imported_by, started_at, [error], 1)
        raise BundleInvalid([error], 1) from exc


def _record_failure(path, imported_by: str, started_at: datetime, errors: list[BundleError], total: int) -> None:
    m.ImportRun.objects.create(
        started_at=started_at, finished_at=timezone.now(), imported_by=imported_by, source=str(path)[:1000],
        status=m.ImportRun.Status.FAILED, error_count=total, errors="\n".join(map(str, errors)),
    )


def _import(*, path, imported_by: str, recheck: bool, out: TextIO | None, started_at: datetime) -> ImportResult:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # One import at a time: a second waits, then sees the first's rows. COPY
            # reads naive timestamps in the session's zone, which must be UTC.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('claimdesk.import_bundle'))")
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    run = m.ImportRun.objects.create(
        started_at=started_at, finished_at=started_at, imported_by=imported_by, source=str(path)[:1000],
        status=m.ImportRun.Status.SUCCEEDED,
    )
    result = ImportResult(run=run)
    with open_bundle(path) as members, connection.cursor() as cursor:
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
            file_result = FileResult(name=spec.filename, member=member.where)
            result.files.append(file_result)
            file_result.sha256, size = member.digest()
            earlier = None if recheck else _unchanged_before(spec.filename, file_result.sha256)
            if earlier is not None:
                file_result.lines_read = earlier.lines_read
                file_result.skipped_as_unchanged = True
                continue
            work.read(spec, member, size, file_result)
        work.errors.raise_if_any()
        work.insert_staged()
        work.errors.raise_if_any()
    m.ImportFile.objects.bulk_create(
        m.ImportFile(run=run, name=f.name, member=f.member, sha256=f.sha256, lines_read=f.lines_read,
                     inserted=f.inserted, already_present=f.already_present,
                     skipped_as_unchanged=f.skipped_as_unchanged)
        for f in result.files
    )
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    return result


def report_lines(result: ImportResult) -> Iterable[str]:
    width = max((len(f.name) for f in result.files), default=0)
    for f in result.files:
        note = "  (unchanged since an earlier import; not read again)" if f.skipped_as_unchanged else ""
        yield (f"{f.name:<{width}}  {f.lines_read:>10} read  {f.inserted:>10} inserted  "
               f"{f.already_present:>10} already present{note}")
    if result.inserted == 0:
        yield f"Import #{result.run.pk}: nothing new, every line was already present; nothing was written."
    else:
        yield f"Import #{result.run.pk}: {result.inserted} rows inserted."
