"""The patch-comparison report API: its filters' vocabulary, and report JSON → typed results. All
validation of upstream data lives here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from exporter.errors import InvalidResponse, ReportFailed
from exporter.labels import label_value, snake_case
from exporter.scrub import scrub, shown

# The vendor page's allowed filter values, in the vendor's spelling.
INSTALL_STATUSES = (
    "Installed", "Not Installed", "Aborted", "Failed", "In Progress", "Installed With Errors",
)
PATCH_APPROVALS = ("Approved for Install", "No Approval", "Not Approved", "Declined", "Approved for Removal")
PATCH_CATEGORIES = (
    "Applications", "Critical Updates", "Security Updates", "Definition Updates", "Drivers", "Feature Packs",
    "Service Packs", "Third Party", "Tools", "Update Rollups", "Updates", "Upgrades",
)

# Always exported per device class, 0 when the report leaves the key out (as the API's example does):
# the vendor's approval values (the filter's vocabulary) as label values.
KNOWN_APPROVAL_STATUSES = tuple(snake_case(approval) for approval in PATCH_APPROVALS)
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED_STATUSES = ("FAILED", "ABORTED")
_STATUSES = (IN_PROGRESS, COMPLETED, *FAILED_STATUSES)


class ApprovalCount(NamedTuple):
    device_class: str
    approval_status: str
    count: int  # type: ignore[assignment]  # shadows tuple.count; the vendor's word for it


class InstallCount(NamedTuple):
    approval_status: str
    install_status: str
    patch_type: str
    count: int  # type: ignore[assignment]  # shadows tuple.count; the vendor's word for it


@dataclass(frozen=True)
class ReportData:
    """The counts of one COMPLETED report, with label values already normalised."""

    approvals: tuple[ApprovalCount, ...]
    installs: tuple[InstallCount, ...] = ()

    @property
    def device_classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(row.device_class for row in self.approvals))


def report_data(
    approvals: Iterable[Sequence[object]], installs: Iterable[Sequence[object]], where: str
) -> ReportData:
    """Counts from rows of plain values (the state file keeps them so), as strictly as a report from
    N-central: raises InvalidResponse, ValueError, TypeError or KeyError if they are not that."""
    return _report_data(
        (((label_value(d, where), label_value(a, where)), _count(c, where)) for d, a, c in approvals),
        (
            ((label_value(a, where), label_value(i, where), label_value(p, where)), _count(c, where))
            for a, i, p, c in installs
        ),
    )


def _report_data(
    approvals: Iterable[tuple[tuple[str, ...], int]], installs: Iterable[tuple[tuple[str, ...], int]]
) -> ReportData:
    return ReportData(
        approvals=tuple(ApprovalCount(d, a, c) for (d, a), c in _summed(approvals).items()),
        installs=tuple(InstallCount(a, i, p, c) for (a, i, p), c in _summed(installs).items()),
    )


@dataclass(frozen=True)
class PollResult:
    report_id: int
    status: str
    data: ReportData | None


# Beyond this a count is surely garbage, and it would not survive the trip through a float exactly.
MAX_COUNT = 2**53


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResponse(f"{where}: count is not an integer: {shown(value)}")
    if value < 0:
        raise InvalidResponse(f"{where}: count is negative: {value}")
    if value > MAX_COUNT:
        raise InvalidResponse(f"{where}: count is implausibly large: {shown(value)}")
    return value


def as_object(value: object, where: str) -> Mapping[str, Any]:
    """`value` as a JSON object, or InvalidResponse naming `where`."""
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidResponse(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _summed(rows: Iterable[tuple[tuple[str, ...], int]]) -> dict[tuple[str, ...], int]:
    # Two spellings of one status (or a repeated device class) must not become duplicate series.
    totals: dict[tuple[str, ...], int] = {}
    for labels, count in rows:
        total = totals.get(labels, 0) + count
        if total > MAX_COUNT:  # the bound each count meets: what is stored must be what a start-up loads
            raise InvalidResponse(f"data: counts for {shown(', '.join(labels), 80)} add up to an implausible {total}")
        totals[labels] = total
    return totals


def report_id_of(body: Mapping[str, Any]) -> int:
    """The `reportId` of a submit answer; a 200 carrying an error message instead fails here."""
    report_id = body.get("reportId")
    if isinstance(report_id, bool) or not isinstance(report_id, int):
        message = body.get("message")
        detail = f" (message: {shown(message)})" if message is not None else ""
        raise InvalidResponse(f"submit answer has no integer reportId{detail}")
    if not valid_report_id(report_id):
        raise InvalidResponse(f"submit answer's reportId {shown(report_id)} is not a positive 32-bit integer")
    return report_id


# N-central's report ids are Java ints; anything else is not an id we can poll.
MAX_REPORT_ID = 2**31 - 1


def valid_report_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REPORT_ID


def parse_poll(body: Mapping[str, Any], report_id: int, max_series: int | None = None) -> PollResult:
    status = body.get("reportStatus")
    if status not in _STATUSES:
        message = body.get("message")
        detail = f" (message: {shown(message)})" if message is not None else ""
        raise InvalidResponse(f"unknown reportStatus {shown(status)}{detail}", report_id=report_id)
    if status in FAILED_STATUSES:
        raise ReportFailed(f"N-central reports the report {status}: {shown(body.get('message'))}",
                           report_id=report_id)
    if status == IN_PROGRESS:
        return PollResult(report_id, IN_PROGRESS, None)
    try:
        data = parse_data(body.get("data"), max_series)
    except InvalidResponse as exc:
        exc.report_id = report_id
        raise
    return PollResult(report_id, COMPLETED, data)


def parse_data(raw: object, max_series: int | None = None) -> ReportData:
    """Validate a COMPLETED report's `data`. More than `max_series` series is refused before anything is
    built from them (a huge report must not cost memory in proportion to it)."""
    data = as_object(raw, "data")
    if "deviceClassSummaries" not in data:
        raise InvalidResponse("data: deviceClassSummaries is missing")
    summaries = data["deviceClassSummaries"]
    if not isinstance(summaries, list):
        raise InvalidResponse(f"data.deviceClassSummaries: expected a list, got {_type_name(summaries)}")
    limit = _SeriesLimit(max_series)
    limit.add(len(summaries) * len(KNOWN_APPROVAL_STATUSES))
    approvals: list[tuple[tuple[str, ...], int]] = []
    for index, item in enumerate(summaries):
        where = f"data.deviceClassSummaries[{index}]"
        summary = as_object(item, where)
        device_class = label_value(summary.get("deviceClass"), f"{where}.deviceClass")
        raw_counts = summary.get("approvalStatusCounts")
        # Left out or null: no counts (all 0). Any other non-object ([], 0, false, "") is a wrong shape.
        counts = as_object({} if raw_counts is None else raw_counts, f"{where}.approvalStatusCounts")
        approvals.extend(((device_class, status), 0) for status in KNOWN_APPROVAL_STATUSES)
        seen: dict[str, str] = {}
        for key, value in counts.items():
            label = snake_case(scrub(str(key)))  # scrubbed before snake_case respells a secret in it
            if label in seen:
                raise InvalidResponse(
                    f"{where}.approvalStatusCounts: keys {shown(seen[label])} and {shown(key)} are both "
                    f"approval_status {shown(label)}"
                )
            seen[label] = str(key)
            if label not in KNOWN_APPROVAL_STATUSES:
                limit.add(1)
            approvals.append(((device_class, label), _count(value, f"{where}.{key}")))
    installs: list[tuple[tuple[str, ...], int]] = []
    for index, item in enumerate(_list(data.get("patchSummaryList"), "data.patchSummaryList")):
        where = f"data.patchSummaryList[{index}]"
        summary = as_object(item, where)
        approval = snake_case(label_value(summary.get("approvalStatus"), f"{where}.approvalStatus"))
        for s_index, status_item in enumerate(_list(summary.get("patchInstallStatusCounts"), where)):
            s_where = f"{where}.patchInstallStatusCounts[{s_index}]"
            status_counts = as_object(status_item, s_where)
            install = snake_case(label_value(status_counts.get("patchInstallStatus"), f"{s_where}.patchInstallStatus"))
            for t_index, type_item in enumerate(_list(status_counts.get("patchTypeSummaries"), s_where)):
                t_where = f"{s_where}.patchTypeSummaries[{t_index}]"
                type_counts = as_object(type_item, t_where)
                patch_type = snake_case(label_value(type_counts.get("patchType"), f"{t_where}.patchType"))
                limit.add(1)
                installs.append(((approval, install, patch_type), _count(type_counts.get("count"), t_where)))
    return _report_data(approvals, installs)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _SeriesLimit:
    """Counts the series a report would export; refuses it as soon as it exceeds `max_series`."""

    def __init__(self, max_series: int | None) -> None:
        self.max_series = max_series
        self.count = 0

    def add(self, series: int) -> None:
        self.count += series
        if self.max_series is not None and self.count > self.max_series:
            raise InvalidResponse(
                f"data: the report has more than max_series={self.max_series} series "
                f"({self.count} counted so far); refused"
            )
