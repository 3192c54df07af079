"""The /metrics body: the collections' metrics rendered once per store snapshot, the small live part when
its inputs change, the runtime part at most once a second.

A collection's result changes once per run, so the collections' text (and gzip form) is rendered once, by
the job thread after the run (or by a scrape, when a result has aged past its `max_data_age`), and served
as bytes. The same holds for the OpenMetrics form, rendered once a scrape has asked for it.

A gzip answer is one RFC 1952 member (curl and browsers read no further than the first member): the
cached collections part is raw deflate ended with a sync flush (byte-aligned, not final), so the per-scrape
live part, deflated on its own and finished, can follow it in the same stream; the CRC-32 is continued
over the live bytes and the trailer written per scrape.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_exposition

from exporter.collector import CollectionCollector, ExporterCollector, families
from exporter.store import Snapshot, Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUNTIME_MAX_AGE = 1.0  # seconds; Prometheus scrapes far less often, so a real scrape always sees fresh values
OPENMETRICS_CONTENT_TYPE = om_exposition.CONTENT_TYPE_LATEST  # version 1.0.0
_EOF = b"# EOF\n"
# ID1 ID2, deflate, no flags, mtime 0, no extra flags, OS unknown (RFC 1952 2.3).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True)
class _Form:
    """The collections part in one format: its text, and the gzip header plus that text as sync-flushed raw
    deflate, with the CRC-32 and length the trailer continues from."""

    text: bytes
    gzip_head: bytes
    crc: int

    @classmethod
    def of(cls, text: bytes) -> _Form:
        deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        head = GZIP_HEADER + deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)
        return cls(text, head, zlib.crc32(text))

    def gzip_tail(self, live: bytes) -> bytes:
        """The rest of the gzip member after `gzip_head`: `live` deflated and finished, then the trailer."""
        deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = deflate.compress(live) + deflate.flush(zlib.Z_FINISH)
        size = (len(self.text) + len(live)) & 0xFFFFFFFF
        return body + struct.pack("<II", zlib.crc32(live, self.crc), size)


@dataclass(frozen=True, eq=False)
class _Rendered:
    """The collections part as rendered from one snapshot. The snapshot itself is the cache key: the store swaps
    a new immutable one on every change, so whatever `families` reads from it is keyed, and holding it keeps
    its identity from being reused. `expired` is the one input that is not in the snapshot (a report's data
    ages out of the clock and the config's `max_data_age`), compared by value."""

    snapshot: Snapshot
    expired: frozenset[str]
    text: _Form
    openmetrics: _Form | None

    def matches(self, snapshot: Snapshot, expired: frozenset[str]) -> bool:
        return self.snapshot is snapshot and self.expired == expired


class _SnapshotCollector:
    """A one-off collector over a fixed snapshot, so the cache renders exactly what it keys on."""

    def __init__(self, metrics: list[object]) -> None:
        self._metrics = metrics

    def collect(self) -> list[object]:
        return self._metrics


class LiveCollector(Protocol):
    """A collector of the live part, which says what it renders from, so the part is rendered again only when
    that changes (prometheus_client's formatting costs about 250 us a scrape at a few dozen samples)."""

    def collect(self) -> Iterable[Metric]: ...

    def inputs(self) -> object:
        """Everything `collect` renders from, compared with ==: equal inputs, the same metrics."""
        ...


class Exposition:
    def __init__(self, store: Store, collections: CollectionCollector, exporter: ExporterCollector) -> None:
        self._store = store
        self._collections = collections
        # Process, platform and gc metrics read /proc and walk the gc stats (~150 us): under a flood of
        # scrapes they are rendered at most once per RUNTIME_MAX_AGE; the rest of the live part per scrape.
        self.runtime = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.runtime)
        PlatformCollector(registry=self.runtime)
        GCCollector(registry=self.runtime)
        self._runtime: dict[bool, tuple[float, bytes]] = {}
        self.live = CollectorRegistry(auto_describe=False)
        self._live_collectors: list[LiveCollector] = []
        self._live: dict[bool, tuple[tuple[object, ...], bytes]] = {}
        self._tail: dict[bool, tuple[_Form, bytes, bytes]] = {}  # per format: (collections part, live part, gzip tail)
        self._add_live(exporter)
        self._run_info: list[LiveCollector] = []
        self._cached: _Rendered | None = None
        self._lock = threading.Lock()
        # OpenMetrics is rendered once a scrape has asked for it (Prometheus does); from then on the job
        # thread renders it after each run too.
        self._openmetrics_wanted = False

    def register_runtime(self, collector: LiveCollector) -> None:
        """A live collector of what the exporter learnt while running (server info, failed state writes) or
        runs by (the collections' intervals): in every scrape, and in what `--once` prints."""
        self._add_live(collector)
        self._run_info.append(collector)

    def _add_live(self, collector: LiveCollector) -> None:
        self.live.register(collector)
        self._live_collectors.append(collector)

    def refresh(self) -> None:
        """Render the collections part now (the job thread calls this after a run), not in the next scrape."""
        self._collections_part(self._openmetrics_wanted)

    def _fresh(self, openmetrics_form: bool, snapshot: Snapshot, expired: frozenset[str]) -> _Rendered | None:
        """The collections part of `snapshot` if rendered already (in OpenMetrics too when `openmetrics_form`)."""
        cached = self._cached
        if cached is not None and cached.matches(snapshot, expired) and (cached.openmetrics or not openmetrics_form):
            return cached
        return None

    def _collections_part(self, openmetrics_form: bool = False) -> _Rendered:
        snapshot = self._store.snapshot
        expired = self._collections.expired(snapshot)
        if (fresh := self._fresh(openmetrics_form, snapshot, expired)) is not None:
            return fresh
        with self._lock:
            cached = self._cached
            if cached is not None and not cached.matches(snapshot, expired):
                cached = None
            if cached is not None and (cached.openmetrics or not openmetrics_form):
                return cached
            self._openmetrics_wanted = self._openmetrics_wanted or openmetrics_form
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_SnapshotCollector(families(snapshot, expired)))  # type: ignore[arg-type]
            text = cached.text if cached is not None else _Form.of(generate_latest(registry))
            om: _Form | None = None
            if self._openmetrics_wanted:
                # The collections part comes first; the live part that follows it ends the body with `# EOF`.
                om = _Form.of(_openmetrics(registry).removesuffix(_EOF))
            self._cached = _Rendered(snapshot, expired, text, om)
            return self._cached

    def render_parts(self, *, gzipped: bool = False, openmetrics: bool = False) -> tuple[bytes, bytes]:
        """The body as (cached collections part, live part), to be written one after the other: the cached bytes
        are never copied (joining them per scrape costs a body-sized allocation, 1.2 MB at 10,000 series,
        that glibc keeps resident in every handler thread's arena). OpenMetrics 1.0.0 when `openmetrics`,
        else the text format 0.0.4; one gzip member when `gzipped`."""
        return self._parts(self._collections_part(openmetrics), gzipped, openmetrics)

    def rendered_parts(self, *, gzipped: bool = False, openmetrics: bool = False) -> tuple[bytes, bytes] | None:
        """`render_parts` when the collections part is rendered already, so the body costs only the live part;
        None when the collections part is still to be rendered."""
        snapshot = self._store.snapshot
        rendered = self._fresh(openmetrics, snapshot, self._collections.expired(snapshot))
        return None if rendered is None else self._parts(rendered, gzipped, openmetrics)

    def _parts(self, rendered: _Rendered, gzipped: bool, openmetrics: bool) -> tuple[bytes, bytes]:
        form = rendered.openmetrics if openmetrics else rendered.text
        assert form is not None
        live = self._runtime_part(openmetrics) + self._live_part(openmetrics)
        if gzipped:
            cached = self._tail.get(openmetrics)
            if cached is not None and cached[0] is form and cached[1] == live:
                return form.gzip_head, cached[2]
            tail = form.gzip_tail(live)
            self._tail[openmetrics] = (form, live, tail)
            return form.gzip_head, tail
        return form.text, live

    def _live_part(self, openmetrics: bool) -> bytes:
        # The inputs are read before rendering: a change in between renders the newer values under the older
        # key, which the next scrape finds stale and renders again.
        inputs = tuple(collector.inputs() for collector in self._live_collectors)
        cached = self._live.get(openmetrics)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        text = _openmetrics(self.live) if openmetrics else generate_latest(self.live)
        self._live[openmetrics] = (inputs, text)
        return text

    def _runtime_part(self, openmetrics: bool) -> bytes:
        now = time.monotonic()
        cached = self._runtime.get(openmetrics)
        if cached is not None and now - cached[0] < RUNTIME_MAX_AGE:
            return cached[1]
        text = _openmetrics(self.runtime).removesuffix(_EOF) if openmetrics else generate_latest(self.runtime)
        self._runtime[openmetrics] = (now, text)
        return text

    def render_collections(self) -> bytes:
        """What `--once` prints for the textfile collector: the collections' metrics and what the run learnt
        (server info, failed state writes); no process or exporter build metrics."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._collections)
        for collector in self._run_info:
            registry.register(collector)
        return generate_latest(registry)


def _openmetrics(registry: CollectorRegistry) -> bytes:
    text: bytes = om_exposition.generate_latest(registry)  # type: ignore[no-untyped-call]
    return text
