"""The /metrics body: report metrics rendered once per change, the small live part per scrape.

Report data changes once per run, so its text (and gzip form) is rendered once, by the job thread after
the run (or by a scrape, when data has aged past `max_data_age`), and served as bytes. Gzip members
concatenate into one valid gzip stream, so the live part is compressed on its own and put in front of
the cached member.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from exporter.collector import ExporterCollector, ReportCollector, families
from exporter.store import Snapshot, Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class _Rendered:
    key: tuple[object, ...]
    text: bytes
    gzipped: bytes


def _render_key(snapshot: Snapshot, expired: frozenset[str]) -> tuple[object, ...]:
    """Exactly what `families` renders from, so a change that shows nowhere (a submitted report's id,
    the last error's text) does not cost a render. The key holds the data objects themselves: compared by
    identity first, and kept alive, so a new object can never pass for an old one."""
    return (expired, *(
        (name, state.data, state.last_success_time, state.last_duration, state.last_run_success,
         state.runs_total, tuple(state.failures.items()), state.customers)
        for name, state in snapshot.items()
    ))


class _SnapshotCollector:
    """A one-off collector over a fixed snapshot, so the cache renders exactly what it keys on."""

    def __init__(self, metrics: list[object]) -> None:
        self._metrics = metrics

    def collect(self) -> list[object]:
        return self._metrics


class Exposition:
    def __init__(self, store: Store, reports: ReportCollector, exporter: ExporterCollector) -> None:
        self._store = store
        self._reports = reports
        self.live = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.live)
        PlatformCollector(registry=self.live)
        GCCollector(registry=self.live)
        self.live.register(exporter)
        self._cached: _Rendered | None = None
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Render the report part now (the job thread calls this after a run), not in the next scrape."""
        self._report_part()

    def _report_part(self) -> _Rendered:
        snapshot = self._store.snapshot
        expired = self._reports.expired(snapshot)
        key = _render_key(snapshot, expired)
        cached = self._cached
        if cached is not None and cached.key == key:
            return cached
        with self._lock:
            cached = self._cached
            if cached is not None and cached.key == key:
                return cached
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_SnapshotCollector(families(snapshot, expired)))  # type: ignore[arg-type]
            text = generate_latest(registry)
            self._cached = _Rendered(key, text, gzip.compress(text, compresslevel=6, mtime=0))
            return self._cached

    def render(self, *, gzipped: bool = False) -> bytes:
        return b"".join(self.render_parts(gzipped=gzipped))

    def render_parts(self, *, gzipped: bool = False) -> tuple[bytes, bytes]:
        """The body as (live part, cached report part), to be written one after the other: the cached bytes
        are never copied (joining them per scrape costs a body-sized allocation, 1.2 MB at 10,000 series,
        that glibc keeps resident in every handler thread's arena)."""
        reports = self._report_part()
        live = generate_latest(self.live)
        if gzipped:
            return gzip.compress(live, compresslevel=1, mtime=0), reports.gzipped
        return live, reports.text

    def render_reports(self) -> bytes:
        """Only the report metrics: what `--once` prints for the textfile collector."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._reports)
        return generate_latest(registry)
