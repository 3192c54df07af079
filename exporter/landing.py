"""The landing page: self-contained HTML with an inline SVG chart; every value escaped.

The data part of a report (its table and chart, the costly part) is rendered once per result and bounded
to the `MAX_CLASSES` largest device classes; only the few lines of run status are rendered per request.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from html import escape
from urllib.parse import urlsplit

from exporter import __version__
from exporter.config import CUSTOMERS, Config, ReportSettings
from exporter.customers import CustomerData, CustomerTotals
from exporter.report import KNOWN_APPROVAL_STATUSES, ReportData
from exporter.store import ReportState

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
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2e7d32}.bad{color:#c62828}.legend span{margin-right:1em}
.chart text{font:inherit}.note{background:#fff8e1;border:1px solid #f9a825;padding:.5em 1em}
"""


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    stamp = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({_age(now - timestamp)} ago)"


def _age(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole >= 86400:
        return f"{whole // 86400}d {whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole}s"


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


def _outcome(state: ReportState | None, none_yet: str) -> str:
    """The last run's outcome as HTML: success, or the failure's reason and error."""
    if state is None or state.last_run_time is None:
        return none_yet
    if state.last_run_success:
        return '<span class="ok">success</span>'
    outcome = f'<span class="bad">failed: {escape(state.last_reason or "unknown")}</span>'
    if state.last_error:
        outcome += f"<br><small>{escape(state.last_error)}</small>"
    return outcome


def _next_run(next_run: dt.datetime | None) -> str:
    return next_run.strftime("%Y-%m-%d %H:%M:%S UTC") if next_run else "not scheduled"


def _report_section(
    report: ReportSettings,
    state: ReportState | None,
    next_run: dt.datetime | None,
    now: float,
    data_html: Callable[[ReportData], str],
) -> str:
    name = escape(report.name)
    filters = "".join(
        f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in filters_text(report).items()
    )
    outcome = _outcome(state, "no run finished yet")
    duration = f"{state.last_duration:.1f}s" if state and state.last_duration is not None else "n/a"
    next_text = _next_run(next_run)
    rows = (
        f"<tr><th>last run</th><td>{outcome}</td></tr>"
        f"<tr><th>last success</th><td>{_when(state.last_success_time if state else None, now)}</td></tr>"
        f"<tr><th>generation time</th><td>{duration}</td></tr>"
        f"<tr><th>next run</th><td>{escape(next_text)}</td></tr>"
    )
    section = [
        f'<section class="report" id="report-{name}"><h2>Report {name}</h2>',
        f"<table>{filters}{rows}</table>",
    ]
    if state is not None and state.data is not None:
        section.append(data_html(state.data))
    section.append("</section>")
    return "".join(section)


def customers_section(
    state: ReportState | None,
    next_run: dt.datetime | None,
    now: float,
    table_html: Callable[[CustomerData], str],
) -> str:
    """The customer scan's outcome and, by `table_html`, the customers with the largest share of devices
    with a patch problem; empty when the scan is not configured."""
    if state is None or (state.customers is None and state.last_run_time is None and next_run is None):
        return ""
    outcome = _outcome(state, "no scan finished yet")
    next_text = _next_run(next_run)
    parts = [
        f'<section class="customers" id="{CUSTOMERS}"><h2>Customers</h2><table>'
        f"<tr><th>last scan</th><td>{outcome}</td></tr>"
        f"<tr><th>last success</th><td>{_when(state.last_success_time, now)}</td></tr>"
        f"<tr><th>next scan</th><td>{escape(next_text)}</td></tr></table>"
    ]
    if state.customers is not None:
        parts.append(table_html(state.customers))
    parts.append("</section>")
    return "".join(parts)


def customers_table(data: CustomerData, limit: int = 20) -> str:
    """The `limit` customers with the largest share of devices with a patch problem, as an HTML table, with
    their stale and end-of-life devices. A customer whose active issues were never read comes last."""

    def share(part: int | None, whole: int) -> float:
        return part / whole if part is not None and whole else 0.0

    worst = sorted(data.per_customer(), key=lambda row: (
        row.patch_issue_devices is None, -share(row.patch_issue_devices, row.devices), -(row.patch_issue_devices or 0),
        row.customer, row.customer_id,
    ))
    def cells(row: CustomerTotals) -> str:
        issues = row.patch_issue_devices
        patch = ('<td class="n">not read</td><td class="n"></td>' if issues is None else
                 f'<td class="n">{issues}</td><td class="n">{share(issues, row.devices):.1%}</td>')
        return (f'<tr><td>{escape(row.customer)}</td><td class="n">{row.customer_id}</td>'
                f'<td class="n">{row.devices}</td>{patch}<td class="n">{row.stale_devices}</td>'
                f'<td class="n">{row.end_of_life_devices}</td></tr>')

    body = "".join(cells(row) for row in worst[:limit])
    return (
        f"<h3>The {min(limit, len(worst))} of {len(worst)} customers with the largest share of devices "
        "with a patch problem</h3><table><tr><th>customer</th><th>id</th><th>devices</th>"
        "<th>with a patch problem</th><th>share</th><th>stale</th><th>end-of-life OS</th></tr>"
        f"{body}</table>"
    )


def ncentral_host(url: str) -> str:
    """The host (and port, if any) of the N-central URL: never its user info, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def render(
    reports: tuple[ReportSettings, ...],
    snapshot: Mapping[str, ReportState],
    next_runs: Mapping[str, dt.datetime | None],
    telemetry_path: str,
    now: float,
    *,
    host: str = "",
    demo: bool = False,
    data_html: Callable[[ReportData], str] = data_section,
    customers_html: Callable[[CustomerData], str] = customers_table,
) -> bytes:
    sections = "".join(
        _report_section(report, snapshot.get(report.name), next_runs.get(report.name), now, data_html)
        for report in reports
    )
    # A report may be named "customers" when the customer scan is off: then that state is the report's.
    scanned = all(report.name != CUSTOMERS for report in reports)
    customers = (
        customers_section(snapshot.get(CUSTOMERS), next_runs.get(CUSTOMERS), now, table_html=customers_html)
        if scanned else ""
    )
    source = f"<p>Watching N-central at <strong>{escape(host)}</strong></p>" if host else ""
    if demo:
        source = (
            '<p class="note"><strong>Demo mode:</strong> the data is simulated by the built-in N-central '
            "simulator; it does not come from a real N-central.</p>"
        )
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>N-central patch exporter</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>N-central patch exporter</h1><p>Version {escape(__version__)}</p>{source}"
        f'<ul><li><a href="{escape(telemetry_path)}">Metrics</a></li>'
        '<li><a href="/-/healthy">Health</a></li><li><a href="/-/ready">Readiness</a></li></ul>'
        f"{sections}{customers}</body></html>"
    )
    return page.encode("utf-8")


class PageCache:
    """The landing page with each report's data part rendered once per result: the cache is keyed on the
    (immutable) ReportData object itself, so a new result can never pass for an old one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[int, tuple[ReportData, str]] = {}
        self._customers: tuple[CustomerData, str] | None = None  # the customers table, keyed the same way

    def _data_html(self, data: ReportData) -> str:
        with self._lock:
            cached = self._parts.get(id(data))
        if cached is not None and cached[0] is data:
            return cached[1]
        html = data_section(data)
        with self._lock:
            self._parts[id(data)] = (data, html)
        return html

    def _customers_html(self, data: CustomerData) -> str:
        cached = self._customers
        if cached is not None and cached[0] is data:
            return cached[1]
        html = customers_table(data)
        self._customers = (data, html)  # one reference swapped whole: the last scan's table, or a newer one
        return html

    def page(
        self,
        config: Config,
        snapshot: Mapping[str, ReportState],
        next_runs: Mapping[str, dt.datetime | None],
        telemetry_path: str,
        demo: bool,
        now: float,
    ) -> bytes:
        current = {id(state.data) for state in snapshot.values() if state.data is not None}
        with self._lock:  # results no report holds any more are dropped
            for key in [key for key in self._parts if key not in current]:
                del self._parts[key]
        return render(config.reports, snapshot, next_runs, telemetry_path, now,
                      host=ncentral_host(config.ncentral.url), demo=demo, data_html=self._data_html,
                      customers_html=self._customers_html)
