"""Value parsers: each returns the normalised value or raises ValueError(problem)."""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,18})?\Z")
PLAIN_DECIMAL_ANY_SIZE = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?\Z")
INT64_MIN, INT64_END = -(2**63), 2**63  # the ids' columns are bigint
SHOWN_CHARACTERS = 60


def shortened(text: str) -> str:
    """Text an error quotes, cut short: a line may hold a megabyte of it, and 100 errors are kept."""
    return text if len(text) <= SHOWN_CHARACTERS else f"{text[:SHOWN_CHARACTERS]}... ({len(text)} characters)"


def shown(value: Any) -> str:
    return shortened(json.dumps(value, default=str))


def parse_int(value: Any) -> int:
    if type(value) is int:
        if INT64_MIN <= value < INT64_END:
            return value
        raise ValueError(f"{shortened(str(value))} is out of range (a 64-bit integer)")
    raise ValueError(f"expected an integer, got {shown(value)}")


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
        # Format "f" writes out every digit: 1e999999999 would be a gigabyte of zeros.
        text = format(value, "f") if value.as_tuple().exponent >= -60 and value.adjusted() <= 60 else str(value)
    else:
        raise ValueError(f'expected a decimal such as "12.5", got {shown(value)}')
    if PLAIN_DECIMAL.match(text):
        return text
    parts = PLAIN_DECIMAL_ANY_SIZE.match(text)
    if not parts:
        raise ValueError(f'{shown(value)} is not a plain decimal such as "12.5"')
    if len(parts.group(1)) > 20:
        raise ValueError(f"{shortened(text)} has more than 20 digits before the point")
    raise ValueError(f"{shortened(text)} has more than 18 digits after the point")


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
            return instant.replace(tzinfo=UTC) if instant.tzinfo is None else _in_utc(instant)
    raise ValueError(f"{shown(value)} is not an ISO-8601 timestamp such as 2025-07-03T12:04:31.512")


def _in_utc(instant: datetime) -> datetime:
    try:
        return instant.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is a year before the first datetime
        raise ValueError(f"{instant.isoformat()} is out of range once converted to UTC") from None


def parse_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise ValueError(f"expected true or false, got {shown(value)}")


def parse_str(value: Any) -> str:
    if type(value) is str and value:
        if "\x00" in value:  # PostgreSQL's text cannot hold it
            raise ValueError("contains a NUL character")
        if not is_utf8(value):
            raise ValueError("contains a lone surrogate (\\ud800 to \\udfff), which is not valid Unicode")
        return value
    raise ValueError(f"expected a non-empty string, got {shown(value)}")


def is_utf8(value: str) -> bool:
    """False for a string with a lone surrogate, which JSON's \\u escapes allow and no database stores."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_str_or_int(value: Any) -> str:
    if type(value) is int:
        return str(value)
    return parse_str(value)


SIGNIFICANT_DIGITS_SQLITE = 15


def significant_digits(text: str) -> int:
    return len(text.lstrip("-").replace(".", "").strip("0"))
