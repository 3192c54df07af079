"""The patch reports, the first collection kind: the `reports` config section (each report its own
collection, on its own schedule), one run of one report (submit or resume, poll with backoff until
COMPLETED, record the outcome), the result (the counts, and the report id in flight so a restart resumes
it), its metric families and its landing-page section (a table and a chart per report)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from html import escape
from typing import Any, ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import page
from exporter.client import NCentralClient, interruptible_sleep
from exporter.collection import ResultType
from exporter.config import (
    SENSIBLE_MIN_INTERVAL,
    ConfigError,
    Notice,
    choices,
    line_of,
    mapping,
    parse_duration,
    positive_duration,
)
from exporter.errors import NotSupported, ReportTimeout, Stopped, UpstreamError
from exporter.kind import CustomerColumn, Kind, Memo
from exporter.live_client import CollectionRun
from exporter.report import (
    COMPLETED,
    INSTALL_STATUSES,
    KNOWN_APPROVAL_STATUSES,
    PATCH_APPROVALS,
    PATCH_CATEGORIES,
    ReportData,
    report_data,
    valid_report_id,
)
from exporter.scrub import shown
from exporter.store import CollectionState, not_future, seconds

log = logging.getLogger(__name__)

_REPORT_NAME = re.compile(r"^[a-z0-9_-]+$")
_ROLLING = re.compile(r"^(\d{1,5})d$")
# After these the report may still be generating at N-central: the next run polls its id again.
_RESUMABLE = frozenset({"connection", "rate_limited", "http"})
_CACHED = "cached from the latest completed patch-comparison report"


# --- settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    report_id: int
    submitted_at: float  # wall-clock seconds


@dataclass(frozen=True)
class ReportResult:
    """What the store keeps of a report: the counts of the last COMPLETED run, and the id of a report
    submitted but not yet collected (so that a restart polls it rather than asking for another)."""

    data: ReportData | None = None
    in_flight: InFlight | None = None

    def to_json(self) -> dict[str, Any]:
        data = self.data
        return {
            "data": {"approvals": [list(row) for row in data.approvals],
                     "installs": [list(row) for row in data.installs]} if data is not None else None,
            "in_flight": {"report_id": self.in_flight.report_id, "submitted_at": self.in_flight.submitted_at}
            if self.in_flight is not None else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], now: float) -> ReportResult:
        data, in_flight_raw = raw.get("data"), raw.get("in_flight")
        in_flight = None
        if in_flight_raw is not None:
            report_id = in_flight_raw["report_id"]
            if not valid_report_id(report_id):
                raise TypeError(f"in_flight.report_id: expected a 32-bit report id, got {shown(report_id)}")
            submitted_at = not_future(seconds(in_flight_raw["submitted_at"]), "in_flight.submitted_at", now)
            if submitted_at is None:
                raise TypeError("in_flight.submitted_at: missing")
            in_flight = InFlight(report_id, submitted_at)
        return cls(
            data=report_data(data["approvals"], data["installs"], "state") if data is not None else None,
            in_flight=in_flight,
        )


@dataclass(frozen=True)
class ReportSettings:
    """One patch-comparison report: what it asks N-central for, and how often and how patiently."""

    kind: ClassVar[str] = "patch_report"
    result_type: ClassVar[ResultType] = ReportResult

    name: str
    interval: float = 3600.0
    start_date: str = "90d"
    install_statuses: tuple[str, ...] | None = None
    patch_approvals: tuple[str, ...] | None = None
    patch_categories: tuple[str, ...] | None = None
    timeout: float = 1800.0
    poll_interval: float = 2.0
    poll_max_interval: float = 30.0
    max_data_age: float = 0.0

    @property
    def fingerprint(self) -> str:
        """Identifies what the report asks N-central for; a stored result is only valid for the same one."""
        spec = [self.start_date, self.install_statuses, self.patch_approvals, self.patch_categories]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def resolve_start_date(spec: str, today: dt.date) -> str:
    rolling = _ROLLING.match(spec)
    if rolling:
        return (today - dt.timedelta(days=int(rolling.group(1)))).isoformat()
    return spec



def _start_date(value: object, key: str) -> str:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    rolling = _ROLLING.match(text)
    if rolling:
        if not 0 < int(rolling.group(1)) <= 36500:
            raise ConfigError(f"{key}: a rolling window must be 1d to 36500d, got {shown(value)}")
        return text
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(
            f"{key}: invalid start date {shown(str(value))}{line_of(value)} "
            "(use YYYY-MM-DD or a rolling window like 90d)"
        ) from None



def _report(value: object, key: str) -> ReportSettings:
    raw = mapping(value, key, {
        "name", "interval", "start_date", "install_statuses", "patch_approvals", "patch_categories",
        "timeout", "poll_interval", "poll_max_interval", "max_data_age",
    })
    if "name" not in raw:
        raise ConfigError(f"{key}.name: required")
    name = raw["name"]
    if not isinstance(name, str) or not _REPORT_NAME.match(name):
        raise ConfigError(f"{key}.name: must match [a-z0-9_-]+, got {shown(name)}")
    poll_interval = positive_duration(raw.get("poll_interval", "2s"), f"{key}.poll_interval")
    poll_max = positive_duration(raw.get("poll_max_interval", "30s"), f"{key}.poll_max_interval")
    if poll_max < poll_interval:
        raise ConfigError(f"{key}.poll_max_interval: must not be shorter than poll_interval")
    return ReportSettings(
        name=name,
        interval=positive_duration(raw.get("interval", "1h"), f"{key}.interval"),
        start_date=_start_date(raw.get("start_date", "90d"), f"{key}.start_date"),
        install_statuses=choices(raw.get("install_statuses"), f"{key}.install_statuses", INSTALL_STATUSES),
        patch_approvals=choices(raw.get("patch_approvals"), f"{key}.patch_approvals", PATCH_APPROVALS),
        patch_categories=choices(raw.get("patch_categories"), f"{key}.patch_categories", PATCH_CATEGORIES),
        timeout=positive_duration(raw.get("timeout", "30m"), f"{key}.timeout"),
        poll_interval=poll_interval,
        poll_max_interval=poll_max,
        max_data_age=parse_duration(raw.get("max_data_age", 0), f"{key}.max_data_age"),
    )



def _result(state: CollectionState | None) -> ReportResult:
    """The report's stored result; an empty one when there is none."""
    result = state.result if state is not None else None
    return result if isinstance(result, ReportResult) else ReportResult()


def _with(state: CollectionState, **changes: Any) -> CollectionState:
    """`state` with its result's fields changed; no result at all once it holds nothing."""
    result = replace(_result(state), **changes)
    return replace(state, result=None if result == ReportResult() else result)


def request_body(settings: ReportSettings, today: dt.date) -> dict[str, Any]:
    """The submit payload; filters not configured are left out so N-central uses all values."""
    body: dict[str, Any] = {"startDate": resolve_start_date(settings.start_date, today)}
    for key, values in (
        ("installStatuses", settings.install_statuses),
        ("patchApprovals", settings.patch_approvals),
        ("patchCategories", settings.patch_categories),
    ):
        if values is not None:
            body[key] = list(values)
    return body


# --- the run -----------------------------------------------------------------------------------------


class RunOutcome(Enum):
    """How one attempt at a report run ended; `Runner.run` decides by it what comes next."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # recorded as a failure with its reason
    SUPERSEDED = "superseded"  # a reload changed or removed the report's settings: nobody asks this any more
    CLIENT_REPLACED = "client_replaced"  # a reload changed the N-central settings and halted this client
    STOPPED = "stopped"  # shutdown (or a halt without a reload)


class _Interrupted(Exception):
    """Unwinds an attempt from deep in its calls to `_attempt`, which returns `outcome`; never leaves it."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


class Runner(CollectionRun):
    """Runs reports, one at a time. Its settings are asked of the running config at each step; a swap that
    changes the N-central settings replaces the client at once and halts the old one's waits (see LiveClient)."""

    def _sleep(self, client: NCentralClient, seconds: float) -> None:
        if self._given_sleep is not None:
            self._given_sleep(seconds)
            return
        halt = self._clients.halt_of(client)
        if halt is None:  # a reload replaced the client meanwhile
            raise _Interrupted(RunOutcome.CLIENT_REPLACED)
        interruptible_sleep(halt)(seconds)

    def _current(self, name: str) -> tuple[ReportSettings | None, NCentralClient]:
        config, client = self._clients.current()
        settings = config.collection(name)
        return settings if isinstance(settings, ReportSettings) else None, client

    def run(self, name: str) -> bool:
        """Run report `name` once; True on success. Never raises for N-central's faults.

        A reload during the run starts it afresh with the new settings: at once when the filters change
        (the result would answer another question) or the N-central settings do (the old client is halted);
        after a failure when anything else of the report changed (the change may be the fix)."""
        while True:
            settings, client = self._current(name)
            if settings is None or self._stop.is_set():
                return False
            outcome = self._attempt(settings, client)
            if outcome is RunOutcome.SUPERSEDED:
                log.info("report settings changed during the run; starting it afresh", extra={"report": name})
            elif outcome is RunOutcome.CLIENT_REPLACED:
                log.info("N-central settings changed during the run; starting it afresh", extra={"report": name})
            elif outcome is RunOutcome.STOPPED:
                return False
            elif self._reloaded_meanwhile(name, settings, client, outcome):
                log.info("configuration reloaded during the run; running it again", extra={"report": name})
            else:
                return outcome is RunOutcome.SUCCEEDED

    def _reloaded_meanwhile(
        self, name: str, settings: ReportSettings, client: NCentralClient, outcome: RunOutcome
    ) -> bool:
        """Whether a finished run should run again at once: its client was replaced, or it failed and its
        settings changed since (never once the report is gone or the exporter stops)."""
        current, current_client = self._current(name)
        if current is None or self._stop.is_set():
            return False
        return current_client is not client or (outcome is RunOutcome.FAILED and current != settings)

    def _attempt(self, settings: ReportSettings, client: NCentralClient) -> RunOutcome:
        """One attempt at the run, recorded in the store unless a reload or shutdown cut it short."""
        name = settings.name
        started = self._monotonic()
        report_id: int | None = None
        try:
            try:
                report_id, submitted_at, deadline, resumed = self._submit_or_resume(settings, client)
                try:
                    data = self._poll_until_done(settings, client, report_id, deadline)
                except NotSupported:
                    if not resumed:
                        raise
                    # N-central forgot the stored id (restarted, or ids expire): that is no reason to fail.
                    log.info("N-central no longer knows the stored report id; submitting anew",
                             extra={"report": name, "report_id": report_id})
                    self._update(settings, lambda s: _with(s, in_flight=None), client)
                    report_id, submitted_at, deadline, _ = self._submit_or_resume(settings, client)
                    data = self._poll_until_done(settings, client, report_id, deadline)
                self._record_success(settings, client, data, report_id, self._wall() - submitted_at)
                return RunOutcome.SUCCEEDED
            except (Stopped, _Interrupted):
                raise
            except Exception as exc:
                failure = self._failure(exc, log, "a report run", name)
            # Recording the failure may be refused too (a reload meanwhile): hence inside the outer try.
            self._record_failure(settings, client, failure, report_id, self._monotonic() - started)
            return RunOutcome.FAILED
        except (Stopped, _Interrupted) as exc:
            if self._stop.is_set():
                log.info("report run interrupted by shutdown", extra={"report": name, "report_id": report_id})
                return RunOutcome.STOPPED
            if isinstance(exc, _Interrupted):
                return exc.outcome
            # The client's own wait was halted: by a reload that replaced it, or by `halt` alone.
            return RunOutcome.CLIENT_REPLACED if self._current(name)[1] is not client else RunOutcome.STOPPED

    def _update(
        self, settings: ReportSettings, change: Callable[[CollectionState], CollectionState], client: NCentralClient
    ) -> None:
        """Change the report's state, unless a reload changed or removed the report, or changed the server
        (the run's `client` talks to), meanwhile."""
        if not self._record(settings, client, change):
            raise _Interrupted(RunOutcome.SUPERSEDED)

    def _submit_or_resume(
        self, settings: ReportSettings, client: NCentralClient
    ) -> tuple[int, float, float, bool]:
        now_wall, now = self._wall(), self._monotonic()
        in_flight = _result(self._store.snapshot.get(settings.name)).in_flight
        if in_flight is not None:
            age = now_wall - in_flight.submitted_at
            if 0 <= age < settings.timeout:
                log.info(
                    "resuming the report still in flight",
                    extra={"report": settings.name, "report_id": in_flight.report_id, "age_seconds": round(age, 1)},
                )
                return in_flight.report_id, in_flight.submitted_at, now + settings.timeout - age, True
        deadline = now + settings.timeout
        body = request_body(settings, dt.datetime.fromtimestamp(now_wall, dt.UTC).date())
        report_id = client.submit(body, deadline)
        submitted_at = self._wall()
        log.debug("report submitted", extra={"report": settings.name, "report_id": report_id})
        self._update(settings, lambda s: _with(s, in_flight=InFlight(report_id, submitted_at)), client)
        return report_id, submitted_at, deadline, False

    def _poll_until_done(
        self, settings: ReportSettings, client: NCentralClient, report_id: int, deadline: float
    ) -> ReportData:
        delay = settings.poll_interval
        while True:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise ReportTimeout(
                    f"report still IN_PROGRESS after the {settings.timeout:g}s timeout", report_id=report_id
                )
            self._sleep(client, min(delay, remaining))
            current, current_client = self._current(settings.name)
            if current is None or current.fingerprint != settings.fingerprint:
                raise _Interrupted(RunOutcome.SUPERSEDED)
            if current_client is not client:
                raise _Interrupted(RunOutcome.CLIENT_REPLACED)
            result = client.poll(report_id, deadline)
            if result.status == COMPLETED and result.data is not None:
                return result.data
            delay = min(delay * 2, settings.poll_max_interval)

    def _record_success(
        self, settings: ReportSettings, client: NCentralClient, data: ReportData, report_id: int, duration: float
    ) -> None:
        now = self._wall()

        def change(state: CollectionState) -> CollectionState:
            return replace(
                state, result=ReportResult(data), last_success_time=now, last_duration=duration,
                last_run_success=True, last_run_time=now, last_reason=None, last_error=None,
                runs_total=state.runs_total + 1,
            )

        self._update(settings, change, client)
        log.info(
            "report run succeeded",
            extra={
                "report": settings.name, "result": "success", "duration_seconds": round(duration, 3),
                "report_id": report_id, "device_classes": len(data.device_classes),
            },
        )

    def _record_failure(
        self, settings: ReportSettings, client: NCentralClient, exc: UpstreamError, report_id: int | None,
        duration: float,
    ) -> None:
        now = self._wall()
        report_id = exc.report_id if exc.report_id is not None else report_id

        def change(state: CollectionState) -> CollectionState:
            kept = _with(state, in_flight=_result(state).in_flight if exc.reason in _RESUMABLE else None)
            return replace(
                kept, last_run_success=False, last_run_time=now, last_reason=exc.reason,
                last_error=exc.message, runs_total=state.runs_total + 1, failures=state.with_failure(exc.reason),
            )

        self._update(settings, change, client)
        log.warning(
            "report run failed",
            extra={
                "report": settings.name, "result": "failure", "reason": exc.reason,
                "status": exc.status if exc.status is not None else "none",
                "report_id": report_id if report_id is not None else "none",
                "duration_seconds": round(duration, 3), "error": exc.message,
            },
        )


# --- metrics -----------------------------------------------------------------------------------------


def families(states: Sequence[tuple[str, CollectionState]]) -> list[Metric]:
    """The reports' counts, per report (by name) whose data is served."""
    approvals = GaugeMetricFamily(
        "ncentral_patch_approvals",
        f"Patches per device class and approval status, {_CACHED}.",
        labels=["report", "device_class", "approval_status"],
    )
    installs = GaugeMetricFamily(
        "ncentral_patch_installs",
        f"Patches per approval status, install status and patch type, {_CACHED}.",
        labels=["report", "approval_status", "install_status", "patch_type"],
    )
    for name, state in states:
        data = _result(state).data
        if data is None:
            continue
        for row in data.approvals:
            approvals.add_metric([name, row.device_class, row.approval_status], row.count)
        for install in data.installs:
            installs.add_metric([name, install.approval_status, install.install_status, install.patch_type],
                                install.count)
    return [approvals, installs]


# --- landing page ------------------------------------------------------------------------------------


_COLOURS = {
    "approved_for_install": "#2e7d32",
    "no_approval": "#f9a825",
    "not_approved": "#ef6c00",
    "declined": "#c62828",
    "approved_for_removal": "#6a1b9a",
}
_OTHER_COLOUR = "#607d8b"
# The names N-central's UI gives the approval states (the label values are their snake_case forms).
STATUS_NAMES = {
    "approved_for_install": "Approved for install",
    "no_approval": "No approval",
    "not_approved": "Not approved",
    "declined": "Declined",
    "approved_for_removal": "Approved for removal",
}
MAX_CLASSES = 50  # device classes shown per report, the largest first; /metrics has them all
MIN_BAR = 2.0  # pixels: a non-zero count never disappears beside a large one
def _statuses(data: ReportData) -> list[str]:
    extra = sorted({row.approval_status for row in data.approvals} - set(KNOWN_APPROVAL_STATUSES))
    return [*KNOWN_APPROVAL_STATUSES, *extra]


def status_name(status: str) -> str:
    return STATUS_NAMES.get(status, status)


def _counts(data: ReportData) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for row in data.approvals:
        table.setdefault(row.device_class, {})[row.approval_status] = row.count
    return table


def _largest(data: ReportData) -> tuple[dict[str, dict[str, int]], int]:
    """The MAX_CLASSES device classes with the most patches (ties by name), and how many more there are."""
    table = _counts(data)
    ranked = sorted(table.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    return dict(ranked[:MAX_CLASSES]), max(0, len(ranked) - MAX_CLASSES)


def chart(table: Mapping[str, Mapping[str, int]], statuses: list[str]) -> str:
    """A horizontal stacked bar per device class of `table` (the largest, see `_largest`), one
    <g class="bar"> each, its parts in the order of `statuses`."""
    widest = max((sum(row.values()) for row in table.values()), default=0) or 1
    label_width, bar_width, row_height = 280, 520, 28
    height = row_height * len(table) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{label_width + bar_width + 80}" '
        f'height="{height}" aria-label="Approval status per device class">'
    ]
    for index, (device_class, counts) in enumerate(table.items()):
        y = index * row_height + 5
        parts.append(f'<g class="bar" data-device-class="{escape(device_class)}">')
        label = device_class if len(device_class) <= 30 else device_class[:29] + "…"
        parts.append(f'<text x="0" y="{y + 17}">{escape(label)}</text>')
        x = float(label_width)
        for status in statuses:
            count = counts.get(status, 0)
            if count:
                width = max(bar_width * count / widest, MIN_BAR)
                colour = _COLOURS.get(status, _OTHER_COLOUR)
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="20" fill="{colour}">'
                    f"<title>{escape(device_class)}: {escape(status_name(status))} {count}</title></rect>"
                )
                x += width
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}">{sum(counts.values())}</text></g>')
    parts.append("</svg>")
    legend = " ".join(
        f'<span><svg width="10" height="10"><rect width="10" height="10" fill="'
        f'{_COLOURS.get(status, _OTHER_COLOUR)}"/></svg> {escape(status_name(status))}</span>'
        for status in statuses
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def data_section(data: ReportData) -> str:
    """The costly part of a report's section: its table and chart, bounded to the largest device classes."""
    statuses = _statuses(data)
    table, more = _largest(data)
    head = "".join(f"<th>{escape(status_name(status))}</th>" for status in statuses)
    body = "".join(
        f"<tr><td>{escape(device_class)}</td>"
        + "".join(f'<td class="n">{counts.get(status, 0)}</td>' for status in statuses)
        + "</tr>"
        for device_class, counts in table.items()
    )
    if more:
        body += (f'<tr class="more"><td colspan="{len(statuses) + 1}">and {more} more device classes '
                 f"(all of them are in the metrics)</td></tr>")
    return (
        f"<h3>Approval status per device class</h3>"
        f"<table><tr><th>device class</th>{head}</tr>{body}</table>"
        + chart(table, statuses)
    )


def filters_text(report: ReportSettings) -> dict[str, str]:
    """The report's filters as the landing page shows them."""
    def show(values: tuple[str, ...] | None) -> str:
        return ", ".join(values) if values is not None else "all"

    return {
        "start date": report.start_date,
        "install statuses": show(report.install_statuses),
        "patch approvals": show(report.patch_approvals),
        "patch categories": show(report.patch_categories),
    }


def report_section(
    report: ReportSettings,
    state: CollectionState | None,
    next_run: dt.datetime | None,
    now: float,
    memo: Memo,
) -> str:
    name = escape(report.name)
    filters = "".join(
        f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in filters_text(report).items()
    )
    outcome = page.outcome(state, "no run finished yet")
    duration = f"{state.last_duration:.1f}s" if state and state.last_duration is not None else "n/a"
    rows = (
        f"<tr><th>last run</th><td>{outcome}</td></tr>"
        f"<tr><th>last success</th><td>{page.when(state.last_success_time if state else None, now)}</td></tr>"
        f"<tr><th>generation time</th><td>{duration}</td></tr>"
        f"<tr><th>next run</th><td>{page.next_run(next_run)}</td></tr>"
    )
    section = [
        f'<section class="report" id="report-{name}"><h2>Report {name}</h2>',
        f"<table>{filters}{rows}</table>",
    ]
    data = _result(state).data
    if data is not None:
        section.append(memo(data, lambda: data_section(data)))
    section.append("</section>")
    return "".join(section)



# --- the kind ----------------------------------------------------------------------------------------


class PatchReports(Kind[ReportSettings]):
    settings_type = ReportSettings
    run_type = Runner
    section = "reports"
    title = "patch report"

    def parse(self, value: object, notices: list[Notice]) -> tuple[ReportSettings, ...]:
        if value is None:
            return self.default()
        if not isinstance(value, list) or not value:
            raise ConfigError("reports: must be a non-empty list")
        reports = tuple(_report(item, f"reports[{index}]") for index, item in enumerate(value))
        seen: set[str] = set()
        for index, report in enumerate(reports):
            if report.name in seen:
                raise ConfigError(f"reports[{index}].name: duplicate report name {report.name!r}")
            seen.add(report.name)
            if report.interval < SENSIBLE_MIN_INTERVAL:
                notices.append(Notice(
                    logging.WARNING,
                    "report interval is below 15m: N-central generates each report in the background, so "
                    "asking more often only adds load to the server",
                    {"report": report.name, "interval_seconds": report.interval},
                ))
        return reports

    def default(self) -> tuple[ReportSettings, ...]:
        return (ReportSettings(name="all"),)

    def demo(self, interval: float) -> tuple[ReportSettings, ...]:
        return (ReportSettings(name="all", interval=interval, poll_interval=0.5, poll_max_interval=2.0,
                               timeout=60.0),)

    def config_key(self, collections: Sequence[ReportSettings], index: int) -> str:
        return f"reports[{index}].name"

    def summary(self, collections: Sequence[ReportSettings]) -> str:
        return f"{len(collections)} report(s): {', '.join(report.name for report in collections)}"

    def families(self, states: Sequence[tuple[str, CollectionState]]) -> list[Metric]:
        return families(states)

    def expired(self, settings: ReportSettings, state: CollectionState, now: float) -> bool:
        """Data older than the report's `max_data_age` (0: never) is not served."""
        return (settings.max_data_age > 0 and state.last_success_time is not None
                and now - state.last_success_time > settings.max_data_age)

    def waiting(self, settings: ReportSettings, state: CollectionState | None) -> bool:
        return _result(state).data is None

    def landing(
        self, collections: Sequence[tuple[ReportSettings, CollectionState | None, dt.datetime | None]],
        now: float, memo: Memo, columns: Sequence[CustomerColumn] = (),
    ) -> str:
        return "".join(report_section(report, state, next_run, now, memo)
                       for report, state, next_run in collections)


KIND = PatchReports()
