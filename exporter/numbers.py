"""Numbers read from untrusted text (HTTP headers, flags): `int()` accepts `²` through `isdigit()`, other
scripts' digits, and raises on thousands of digits; these never do."""

from __future__ import annotations

MAX_DIGITS = 18  # 10**18 bytes or seconds: beyond any real value, and far below int()'s digit limit


def decimal_int(value: str, max_digits: int = MAX_DIGITS) -> int | None:
    """The int a plain ASCII decimal of at most `max_digits` digits spells, else None."""
    if 0 < len(value) <= max_digits and value.isascii() and value.isdecimal():
        return int(value)
    return None
