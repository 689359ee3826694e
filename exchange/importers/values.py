"""Value parsers: each returns the normalised value or raises ValueError(problem)."""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

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

