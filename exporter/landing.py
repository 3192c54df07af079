"""The landing page: self-contained HTML with an inline SVG chart; every value escaped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from html import escape

from exporter import __version__
from exporter.config import CUSTOMERS, ReportSettings
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
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2e7d32}.bad{color:#c62828}.legend span{margin-right:1em}
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


def _counts(data: ReportData) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for row in data.approvals:
        table.setdefault(row.device_class, {})[row.approval_status] = row.count
    return table


def chart(data: ReportData) -> str:
    """A horizontal stacked bar per device class, one <g class="bar"> each."""
    table = _counts(data)
    statuses = _statuses(data)
    widest = max((sum(row.values()) for row in table.values()), default=0) or 1
    label_width, bar_width, row_height = 220, 520, 28
    height = row_height * len(table) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{label_width + bar_width + 80}" '
        f'height="{height}" aria-label="Approval status per device class">'
    ]
    for index, (device_class, counts) in enumerate(table.items()):
        y = index * row_height + 5
        parts.append(f'<g class="bar" data-device-class="{escape(device_class)}">')
        parts.append(f'<text x="0" y="{y + 17}" font-size="13">{escape(device_class[:32])}</text>')
        x = float(label_width)
        for status in statuses:
            count = counts.get(status, 0)
            if count:
                width = bar_width * count / widest
                colour = _COLOURS.get(status, _OTHER_COLOUR)
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="20" fill="{colour}">'
                    f"<title>{escape(device_class)}: {escape(status)} {count}</title></rect>"
                )
                x += width
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}" font-size="12">{sum(counts.values())}</text></g>')
    parts.append("</svg>")
    legend = " ".join(
        f'<span><svg width="10" height="10"><rect width="10" height="10" fill="'
        f'{_COLOURS.get(status, _OTHER_COLOUR)}"/></svg> {escape(status)}</span>'
        for status in statuses
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def _report_section(
    report: ReportSettings, state: ReportState | None, next_run: dt.datetime | None, now: float
) -> str:
    name = escape(report.name)
    filters = "".join(
        f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in report.filters_text().items()
    )
    if state is None or state.last_run_time is None:
        outcome = "no run finished yet"
    elif state.last_run_success:
        outcome = '<span class="ok">success</span>'
    else:
        outcome = f'<span class="bad">failed: {escape(state.last_reason or "unknown")}</span>'
        if state.last_error:
            outcome += f"<br><small>{escape(state.last_error)}</small>"
    duration = f"{state.last_duration:.1f}s" if state and state.last_duration is not None else "n/a"
    next_text = next_run.strftime("%Y-%m-%d %H:%M:%S UTC") if next_run else "not scheduled"
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
        statuses = _statuses(state.data)
        head = "".join(f"<th>{escape(status)}</th>" for status in statuses)
        body = "".join(
            f"<tr><td>{escape(device_class)}</td>"
            + "".join(f'<td class="n">{counts.get(status, 0)}</td>' for status in statuses)
            + "</tr>"
            for device_class, counts in _counts(state.data).items()
        )
        section.append(
            f"<h3>Approval status per device class</h3>"
            f"<table><tr><th>device class</th>{head}</tr>{body}</table>"
        )
        section.append(chart(state.data))
    section.append("</section>")
    return "".join(section)


def customers_section(state: ReportState | None, next_run: dt.datetime | None, now: float, limit: int = 20) -> str:
    """The customer scan's outcome and its `limit` customers with the largest share of devices with a patch
    problem; empty when the scan is not configured."""
    if state is None or (state.customers is None and state.last_run_time is None and next_run is None):
        return ""
    if state.last_run_time is None:
        outcome = "no scan finished yet"
    elif state.last_run_success:
        outcome = '<span class="ok">success</span>'
    else:
        outcome = f'<span class="bad">failed: {escape(state.last_reason or "unknown")}</span>'
        if state.last_error:
            outcome += f"<br><small>{escape(state.last_error)}</small>"
    next_text = next_run.strftime("%Y-%m-%d %H:%M:%S UTC") if next_run else "not scheduled"
    parts = [
        f'<section class="customers" id="{CUSTOMERS}"><h2>Customers</h2><table>'
        f"<tr><th>last scan</th><td>{outcome}</td></tr>"
        f"<tr><th>last success</th><td>{_when(state.last_success_time, now)}</td></tr>"
        f"<tr><th>next scan</th><td>{escape(next_text)}</td></tr></table>"
    ]
    if state.customers is not None:
        totals = state.customers.per_customer()
        worst = sorted(totals, key=lambda row: (-row[3] / row[2] if row[2] else 0.0, -row[3], row[1], row[0]))
        body = "".join(
            f'<tr><td>{escape(name)}</td><td class="n">{customer_id}</td><td class="n">{devices}</td>'
            f'<td class="n">{issues}</td><td class="n">{(issues / devices if devices else 0.0):.1%}</td></tr>'
            for customer_id, name, devices, issues in worst[:limit]
        )
        parts.append(
            f"<h3>The {min(limit, len(worst))} of {len(worst)} customers with the largest share of devices "
            "with a patch problem</h3><table><tr><th>customer</th><th>id</th><th>devices</th>"
            f"<th>with a patch problem</th><th>share</th></tr>{body}</table>"
        )
    parts.append("</section>")
    return "".join(parts)


def render(
    reports: tuple[ReportSettings, ...],
    snapshot: Mapping[str, ReportState],
    next_runs: Mapping[str, dt.datetime | None],
    telemetry_path: str,
    now: float,
) -> bytes:
    sections = "".join(
        _report_section(report, snapshot.get(report.name), next_runs.get(report.name), now) for report in reports
    )
    # A report may be named "customers" when the customer scan is off: then that state is the report's.
    scanned = all(report.name != CUSTOMERS for report in reports)
    customers = customers_section(snapshot.get(CUSTOMERS), next_runs.get(CUSTOMERS), now) if scanned else ""
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>N-central patch exporter</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>N-central patch exporter</h1><p>Version {escape(__version__)}</p>"
        f'<ul><li><a href="{escape(telemetry_path)}">Metrics</a></li>'
        '<li><a href="/-/healthy">Health</a></li><li><a href="/-/ready">Readiness</a></li></ul>'
        f"{sections}{customers}</body></html>"
    )
    return page.encode("utf-8")
