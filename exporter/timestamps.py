"""Timestamps as N-central sends them: RFC 3339 (`2017-02-16T21:00:00+01:00`, the REST API's documented
form) and N-able's own `2024-02-28 15:25:05.939 -0500` (service monitoring), with or without fractions of
a second and offsets. One parser for both; `strict` keeps to RFC 3339."""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

MAX_LENGTH = 64  # longer text is not a timestamp (and is not matched at all)

# RFC 3339's date-time (a space for the T, as RFC 3339 allows; the offset may be missing), plus N-able's
# liberties: a comma before the fraction, a space before the offset, an offset without its colon.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:([.,])(\d+))?(\s*)(?:([Zz])|([+-])(\d{2})(:?)(\d{2}))?",
    re.ASCII,
)


class Timestamp(NamedTuple):
    local: float  # the wall-clock reading as if it were UTC, in seconds since the epoch
    offset: float | None  # seconds east of UTC, when the text gives one

    def seconds(self, default_offset: float | None = None) -> float:
        """Unix time, taking `default_offset` (else UTC) when the text gave none."""
        offset = self.offset if self.offset is not None else default_offset
        return self.local - (offset or 0.0)


def parse_timestamp(value: object, *, strict: bool = False) -> Timestamp | None:
    """A timestamp in one of N-central's forms (RFC 3339 only, when `strict`); None for anything else, the
    caller deciding what that means. A leap second (`23:59:60`) is the same instant as the next second."""
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, mark, fraction, space, zulu, sign, off_h, colon, off_m = match.groups()
    if strict and (mark == "," or space or (sign is not None and not colon)):
        return None
    leap = second == "60"
    try:
        moment = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second) - leap,
                             tzinfo=dt.UTC)
    except ValueError:
        return None
    local = moment.timestamp() + leap + (float(f"0.{fraction}") if fraction else 0.0)
    if zulu:
        return Timestamp(local, 0.0)
    if sign is None:
        return Timestamp(local, None)
    if int(off_h) > 23 or int(off_m) > 59:
        return None
    offset = (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1)
    return Timestamp(local, float(offset))
