"""Parsing one line of a bundle file into the row for its table, or into problems."""

import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, BinaryIO

from .specs import REF_DESCRIPTIONS, Column, FileSpec, KnownValues
from .values import (
    PLAIN_DECIMAL,
    is_utf8,
    parse_bool,
    parse_decimal,
    parse_instant,
    parse_int,
    parse_positive_decimal,
    parse_str,
    parse_str_or_int,
    shortened,
    significant_digits,
)

MISSING = object()


def numbered_lines(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for each line, newline included, read with a bounded readline: a
    line of any length costs at most max_bytes + 1 bytes of memory. A longer line comes out
    cut short: longer than max_bytes, without its newline; the caller refuses it. (Iterated
    in C: a million lines cost no Python frame each.)"""
    return enumerate(iter(partial(stream.readline, max_bytes + 1), b""), 1)


def line_too_long(max_bytes: int) -> str:
    return f"longer than {max_bytes} bytes (IMPORT_MAX_LINE_BYTES); the file was not read further"


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
            except (ValueError, TypeError, AttributeError, StopIteration, RecursionError):
                pass  # the careful path says what is wrong
        return self.parse_carefully(raw, line_no, errors)

    def parse_carefully(self, raw: bytes, line_no: int, errors: list[tuple[int, str | None, str]]) -> tuple | None:
        obj = self._decode(raw, line_no, errors)
        if obj is MISSING:
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
                    raise ValueError(
                        f"unknown value {shortened(repr(value))}; expected one of {', '.join(sorted(column.choices))}"
                    )
                if ref is not None and value not in ref:
                    raise ValueError(f"unknown {REF_DESCRIPTIONS[column.ref]}: {shortened(repr(value))}")
                if max_length is not None and len(value) > max_length:
                    raise ValueError(f"longer than {max_length} characters")
                if (
                    is_decimal
                    and self.max_significant_digits
                    and (significant_digits(value) > self.max_significant_digits)
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

    def _decode(self, raw: bytes, line_no: int, errors: list[tuple[int, str | None, str]]) -> Any:
        """The line's JSON value; or MISSING, its problem added to `errors`."""
        try:
            return self.decoder.decode(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
        except json.JSONDecodeError as exc:
            problem = f"malformed JSON: {exc.msg} at column {exc.colno}"
        except ValueError:  # the decoder's int() reads at most sys.get_int_max_str_digits() digits
            problem = f"malformed JSON: a number with more than {sys.get_int_max_str_digits()} digits"
        except RecursionError:
            problem = "malformed JSON: nested too deeply"
        errors.append((line_no, None, problem))
        return MISSING


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
        check = (
            (lambda v: type(v) is int and low <= v < high and v in ref)
            if ref is not None
            else (lambda v: type(v) is int and low <= v < high)
        )
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
        check = lambda v: (
            type(v) is str
            and 0 < len(v) <= max_length
            and "\x00" not in v  # noqa: E731
            and (v.isascii() or is_utf8(v))
        )
    else:
        return None
    if not column.required:
        required_check = check
        check = lambda v: v is None or required_check(v)  # noqa: E731
    return check
