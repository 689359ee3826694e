"""Amounts as people and files write them: plain ASCII decimals, nothing else."""

import re
from decimal import ROUND_HALF_UP, Decimal

PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
MAX_INTEGER_DIGITS = 20  # DecimalField(max_digits=38, decimal_places=18)


def plain_decimal(text: str) -> Decimal | None:
    """`12`, `12.5`, `0.000001`: ASCII digits with at most one point, nothing more. Decimal() alone
    would also take `1_000`, `١٢`, `１２`, `-0`, `1e3`, `NaN` and surrounding blanks."""
    if not isinstance(text, str) or not PLAIN_DECIMAL.fullmatch(text):
        return None
    value = Decimal(text)
    return value if value.adjusted() < MAX_INTEGER_DIGITS else None


def amount_from(value) -> Decimal | None:
    """An amount as it comes in: a plain decimal string, or a number JSON gave (an int, or a
    Decimal: the API parses JSON numbers as Decimal). Never negative, not even -0, and finite."""
    if isinstance(value, str):
        return plain_decimal(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if isinstance(value, Decimal) and value.is_finite() and not value.is_signed():
        return value if value.adjusted() < MAX_INTEGER_DIGITS else None
    return None


def amount_text(amount, decimals: int | None, *, grouped: bool = True) -> str:
    """An amount as people read it: to its asset's decimals (every one of them, no more), digits
    grouped by thousands; every digit stored when the asset is unknown."""
    if amount is None:
        return ""
    value = Decimal(amount)
    if decimals is None:
        value = value.normalize()
        if value == value.to_integral():
            value = value.quantize(Decimal(1))
    else:
        value = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{value:,f}" if grouped else f"{value:f}"
