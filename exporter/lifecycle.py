"""End-of-life operating systems: the rules that say from which date the vendor no longer patches an OS,
as N-central names it in a device's `supportedOs`, and the default list from the vendors' lifecycle pages.

The first rule whose `match` is found in the name (and whose `except` is not) decides, so a rule for a
narrower name (Windows 8.1) comes before a broader one it would also match (Windows 8).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EndOfLife:
    """One rule: an OS whose name `match` is found in (without regard to case), and `exclude` is not, is
    end-of-life from the start (UTC) of `since`, the date its vendor's support ended."""

    match: re.Pattern[str]
    since: dt.date
    exclude: re.Pattern[str] | None = None

    def applies(self, os_name: str) -> bool:
        return self.match.search(os_name) is not None and (
            self.exclude is None or self.exclude.search(os_name) is None
        )

    @property
    def spec(self) -> list[str | None]:
        """The rule as plain values (what a stored result's fingerprint is made of)."""
        return [self.match.pattern, self.since.isoformat(), self.exclude.pattern if self.exclude else None]


def rule(match: str, since: str, exclude: str | None = None) -> EndOfLife:
    """A rule from text; the regular expressions are searched without regard to case."""
    return EndOfLife(
        re.compile(match, re.IGNORECASE), dt.date.fromisoformat(since),
        re.compile(exclude, re.IGNORECASE) if exclude is not None else None,
    )


# The end of extended support on Microsoft's lifecycle pages (https://learn.microsoft.com/lifecycle/products/
# followed by the slug in each comment); config.example.yaml carries the same list with the same sources.
DEFAULT_END_OF_LIFE_OS: tuple[EndOfLife, ...] = (
    rule("Windows XP", "2014-04-08"),  # windows-xp
    rule("Windows Vista", "2017-04-11"),  # windows-vista
    rule("Windows 7", "2020-01-14"),  # windows-7
    rule("Windows 8\\.1", "2023-01-10"),  # windows-81
    rule("Windows 8", "2016-01-12"),  # windows-8
    rule("Windows 10.*2015 LTSB", "2025-10-14"),  # windows-10-enterprise-ltsb-2015
    rule("Windows 10.*2016 LTSB", "2026-10-13"),  # windows-10-enterprise-ltsb-2016
    rule("Windows 10.*(LTSC 2019|2019 LTSC)", "2029-01-09"),  # windows-10-enterprise-ltsc-2019
    rule("Windows 10 IoT.*(LTSC 2021|2021 LTSC)", "2032-01-13"),  # windows-10-iot-enterprise-ltsc-2021
    rule("Windows 10.*(LTSC 2021|2021 LTSC)", "2027-01-12"),  # windows-10-enterprise-ltsc-2021
    rule("Windows 10", "2025-10-14", "LTSC|LTSB"),  # windows-10-home-and-pro, windows-10-enterprise-and-education
    rule("Windows Server 2003", "2015-07-14"),  # windows-server-2003- (and windows-server-2003-r2)
    rule("Windows Server 2008 R2", "2020-01-14"),  # windows-server-2008-r2
    rule("Windows Server 2008", "2020-01-14"),  # windows-server-2008
    rule("Windows Server 2012 R2", "2023-10-10"),  # windows-server-2012-r2
    rule("Windows Server 2012", "2023-10-10"),  # windows-server-2012
    rule("Windows Server 2016", "2027-01-12"),  # windows-server-2016
)


def is_end_of_life(rules: Sequence[EndOfLife], os_name: str, today: dt.date) -> bool:
    """Whether `os_name` is end-of-life on `today` (a UTC date): the first rule that applies decides."""
    for entry in rules:
        if entry.applies(os_name):
            return today >= entry.since
    return False
