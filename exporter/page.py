"""What every kind's landing-page section is made of: times and ages as people read them, and a run's
outcome. HTML, every value escaped."""

from __future__ import annotations

import datetime as dt
from html import escape

from exporter.store import CollectionState


def when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    stamp = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({age(now - timestamp)} ago)"


def age(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole >= 86400:
        return f"{whole // 86400}d {whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole}s"


def outcome(state: CollectionState | None, none_yet: str) -> str:
    """The last run's outcome as HTML: success, or the failure's reason and error."""
    if state is None or state.last_run_time is None:
        return none_yet
    if state.last_run_success:
        return '<span class="ok">success</span>'
    text = f'<span class="bad">failed: {escape(state.last_reason or "unknown")}</span>'
    if state.last_error:
        text += f"<br><small>{escape(state.last_error)}</small>"
    return text


def next_run(scheduled: dt.datetime | None) -> str:
    """When the collection runs next (escaped)."""
    return escape(scheduled.strftime("%Y-%m-%d %H:%M:%S UTC") if scheduled else "not scheduled")
