"""The landing page: self-contained HTML, one section per collection kind (each kind renders its own, see
`exporter.kind`); every value escaped.

The costly part of a section (a report's table and chart) is rendered once per result through `PageCache`;
only the few lines of run status are rendered per request.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from html import escape
from urllib.parse import urlsplit

from exporter import __version__, registry
from exporter.config import Config, host_port
from exporter.kind import Memo
from exporter.store import Snapshot

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2e7d32}.bad{color:#c62828}.legend span{margin-right:1em}
.chart text{font:inherit}.note{background:#fff8e1;border:1px solid #f9a825;padding:.5em 1em}
"""


def ncentral_host(url: str) -> str:
    """The host (and port, if any) of the N-central URL: never its user info, path or query."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return host_port(parts.hostname, port) if parts.hostname else ""


def _render_now(_result: object, render: Callable[[], str]) -> str:
    return render()


def render(
    config: Config,
    snapshot: Snapshot,
    next_runs: Mapping[str, dt.datetime | None],
    telemetry_path: str,
    now: float,
    *,
    demo: bool = False,
    memo: Memo = _render_now,
) -> bytes:
    collections = {
        kind: [(collection, snapshot.get(collection.name)) for collection in kind.of(config.collections)]
        for kind in registry.KINDS
    }
    lent = {kind: column for kind in registry.KINDS if (column := kind.customer_column(collections[kind]))}
    sections = "".join(
        kind.landing(
            [(collection, state, next_runs.get(collection.name)) for collection, state in collections[kind]],
            now, memo, [column for lender, column in lent.items() if lender is not kind],
        )
        for kind in registry.KINDS
    )
    host = ncentral_host(config.ncentral.url)
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
        f"{sections}</body></html>"
    )
    return page.encode("utf-8")


class PageCache:
    """The landing page with each section's costly part rendered once per result: the cache is keyed on the
    (immutable) result object itself, so a new result can never pass for an old one. A part no page has
    shown since the one before is dropped with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[tuple[int, ...], tuple[tuple[object, ...], str]] = {}

    def page(
        self, config: Config, snapshot: Snapshot, next_runs: Mapping[str, dt.datetime | None],
        telemetry_path: str, demo: bool, now: float,
    ) -> bytes:
        shown: dict[tuple[int, ...], tuple[tuple[object, ...], str]] = {}

        def memo(result: object, render_part: Callable[[], str]) -> str:
            results = result if isinstance(result, tuple) else (result,)
            key = tuple(map(id, results))
            with self._lock:
                cached = self._parts.get(key)
            if cached is None or any(held is not given for held, given in zip(cached[0], results, strict=True)):
                cached = (results, render_part())
            shown[key] = cached
            return cached[1]

        body = render(config, snapshot, next_runs, telemetry_path, now, demo=demo, memo=memo)
        with self._lock:
            self._parts = shown  # swapped whole: the parts this page showed, and no other
        return body
