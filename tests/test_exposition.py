"""The pre-rendered /metrics body: byte for byte what prometheus_client's `generate_latest` renders for the
same data, refreshed when the data changes, and the same text again when served gzipped over HTTP."""

from __future__ import annotations

import gzip
import http.client
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import fields, replace
from functools import partial
from types import MappingProxyType

import pytest
from conftest import MakeApp
from helpers import Samples, metrics_body, parse_samples, sample, scrape, select, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.app import Exporter
from exporter.client import ServerInfo
from exporter.collection import Result
from exporter.collector import (
    CollectionCollector,
    ExporterCollector,
    ReloadStatus,
    RuntimeCollector,
    ScheduleCollector,
)
from exporter.config import Config, NCentralSettings
from exporter.customers import CUSTOMERS, CustomerCount, CustomerData, CustomerSettings
from exporter.errors import REASONS
from exporter.exposition import Exposition
from exporter.report import ApprovalCount, InstallCount, ReportData
from exporter.reports import InFlight, ReportResult, ReportSettings
from exporter.simulator import Simulator
from exporter.store import CollectionState, Store
from exporter.web import WebServer
from exporter.webconfig import WebConfig

REPORTS = (ReportSettings(name="all"), ReportSettings(name="servers", max_data_age=3600.0))

DATA = ReportData(
    approvals=(
        ApprovalCount("Laptops - Windows", "approved_for_install", 6424),
        ApprovalCount("Laptops - Windows", "declined", 2004),
        # Label values that need escaping, and text beyond ASCII, must come out as generate_latest writes them.
        ApprovalCount('Kiosks "Lobby" \\ Front\nDesk', "no_approval", 3),
        ApprovalCount("Serveurs - Réseau ☃", "not_approved", 12),
    ),
    installs=(
        InstallCount("approved_for_install", "installed", "security_updates", 5120),
        InstallCount("approved_for_install", "failed", "critical_updates", 4),
    ),
)

# Live values (CPU seconds, memory, gc counts) move between two renders; everything else must not.
_LIVE_VALUE = re.compile(r"^((?:process|python_gc)_\S*(?:\{[^}]*\})?) \S+$", re.MULTILINE)


def steady(text: bytes) -> str:
    return _LIVE_VALUE.sub(r"\1 <live>", text.decode())


def fill(store: Store, name: str, data: ReportData | Result, when: float, runs: int = 1) -> None:
    """One successful run of `name`: `data` a report's counts, or another kind's result."""
    result = ReportResult(data) if isinstance(data, ReportData) else data

    def change(state: CollectionState) -> CollectionState:
        return replace(state, result=result, last_success_time=when, last_duration=12.5, last_run_success=True,
                       last_run_time=when, runs_total=runs)

    assert store.update(name, change, fingerprint=store.snapshot[name].fingerprint)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def store() -> Store:
    return Store(REPORTS)


@pytest.fixture
def reports(store: Store, clock: Clock) -> CollectionCollector:
    return CollectionCollector(store, lambda: REPORTS, wall=clock)


@pytest.fixture
def exposition(store: Store, reports: CollectionCollector) -> Exposition:
    return Exposition(store, reports, ExporterCollector())


def stock(exposition: Exposition, reports: CollectionCollector) -> bytes:
    """What prometheus_client renders, per scrape, for a registry of the same collectors (the cached report
    part first, then the live part)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(reports)
    registry.register(exposition.runtime)
    registry.register(exposition.live)
    return generate_latest(registry)


def assert_same_as_stock(exposition: Exposition, reports: CollectionCollector) -> bytes:
    plain = metrics_body(exposition)
    unzipped = gzip.decompress(metrics_body(exposition, gzipped=True))
    expected = steady(stock(exposition, reports))
    assert steady(plain) == expected
    assert steady(unzipped) == expected
    # The cached report part is exactly generate_latest's text for the report collector alone.
    only_reports = CollectorRegistry(auto_describe=False)
    only_reports.register(reports)
    assert plain.startswith(generate_latest(only_reports))
    assert unzipped.startswith(generate_latest(only_reports))
    return plain


def test_the_body_is_what_generate_latest_renders(
    store: Store, exposition: Exposition, reports: CollectionCollector, clock: Clock
) -> None:
    assert_same_as_stock(exposition, reports)  # no data yet: run metrics only
    fill(store, "all", DATA, clock.now)
    fill(store, "servers", replace(DATA, installs=()), clock.now - 60, runs=3)
    body = assert_same_as_stock(exposition, reports)
    samples = parse_samples(body.decode())
    labels = {"report": "all", "device_class": 'Kiosks "Lobby" \\ Front\nDesk', "approval_status": "no_approval"}
    assert sample(samples, "ncentral_patch_approvals", **labels) == 3
    assert sample(samples, "ncentral_patch_report_runs_total", report="servers") == 3
    assert sample(samples, "process_cpu_seconds_total") is not None


def test_the_cache_follows_store_changes(
    store: Store, exposition: Exposition, reports: CollectionCollector, clock: Clock
) -> None:
    fill(store, "all", DATA, clock.now)
    before = assert_same_as_stock(exposition, reports)
    changed = replace(DATA, approvals=(ApprovalCount("Laptops - Windows", "approved_for_install", 7000),))
    fill(store, "all", changed, clock.now + 1, runs=2)
    body = assert_same_as_stock(exposition, reports)
    samples = parse_samples(body.decode())
    labels = {"report": "all", "device_class": "Laptops - Windows", "approval_status": "approved_for_install"}
    assert sample(samples, "ncentral_patch_approvals", **labels) == 7000
    assert sample(samples, "ncentral_patch_approvals", report="all", device_class="Laptops - Windows",
                  approval_status="declined") is None
    assert sample(samples, "ncentral_patch_report_runs_total", report="all") == 2
    assert steady(body) != steady(before)
    store.reconfigure(REPORTS[:1])  # a reload that drops a report
    dropped = parse_samples(assert_same_as_stock(exposition, reports).decode())
    assert select(dropped, "ncentral_patch_report_runs_total", report="servers") == {}


def test_data_past_max_data_age_leaves_the_cache_without_a_store_change(
    store: Store, exposition: Exposition, reports: CollectionCollector, clock: Clock
) -> None:
    fill(store, "servers", DATA, clock.now)
    snapshot = store.snapshot
    fresh = parse_samples(assert_same_as_stock(exposition, reports).decode())
    assert len(select(fresh, "ncentral_patch_approvals", report="servers")) == len(DATA.approvals)
    clock.now += 3601  # past the report's max_data_age of 1 h
    stale = parse_samples(assert_same_as_stock(exposition, reports).decode())
    assert store.snapshot is snapshot  # nothing was stored: only the clock moved
    assert select(stale, "ncentral_patch_approvals", report="servers") == {}
    assert sample(stale, "ncentral_patch_report_last_run_success", report="servers") == 1


SCANNED = CustomerData((CustomerCount(3, "Acme", "Laptops", 5, 2, 1), CustomerCount(3, "Acme", "Servers", 1, 0, 0)))
# Per field of CollectionState, a value other than what `fill` stores (per collection where they differ). A
# new field must be added here, and the test below then proves that a store change to it reaches the cached
# body.
CHANGED: dict[str, object] = {
    "fingerprint": "another-fingerprint",
    "result": {"all": ReportResult(replace(DATA, installs=DATA.installs[:1]), InFlight(7, 1.7e9)),
               CUSTOMERS: CustomerData(SCANNED.rows[:1])},
    "last_success_time": 1.7e9,
    "last_duration": 99.5,
    "last_run_success": False,
    "last_run_time": 1.7e9 + 5,
    "last_reason": "http",
    "last_error": "HTTP 500",
    "runs_total": 41,
    "failures": MappingProxyType({**dict.fromkeys(REASONS, 0), "http": 3, "unheard_of": 1}),
    "kind": "unknown_kind",  # last: a state of no known kind publishes no result, whatever it changes
}


def test_every_state_field_changed_through_the_store_reaches_the_cached_body(clock: Clock) -> None:
    assert set(CHANGED) == {field.name for field in fields(CollectionState)}, "a new state field: add it to CHANGED"
    store = Store((*REPORTS, CustomerSettings()))
    reports = CollectionCollector(store, lambda: REPORTS, wall=clock)
    exposition = Exposition(store, reports, ExporterCollector())
    fill(store, "all", DATA, clock.now)
    fill(store, CUSTOMERS, SCANNED, clock.now)
    for field_name, changed in CHANGED.items():
        before = metrics_body(exposition)  # renders, and caches, the state before the change
        for name in ("all", CUSTOMERS):
            value = changed[name] if isinstance(changed, dict) else changed
            state = store.snapshot[name]
            assert getattr(state, field_name) != value
            change = partial(replace, **{field_name: value})
            assert store.update(name, change, fingerprint=state.fingerprint)
        after = assert_same_as_stock(exposition, reports)
        if field_name not in ("fingerprint", "last_run_time", "last_reason", "last_error"):
            assert steady(after) != steady(before), f"{field_name} shows in the metrics"


def test_a_reload_that_sets_max_data_age_reaches_the_cached_body_without_a_store_change(
    store: Store, exposition: Exposition, clock: Clock
) -> None:
    configured = [REPORTS]
    reports = CollectionCollector(store, lambda: configured[0], wall=clock)
    exposition = Exposition(store, reports, ExporterCollector())
    fill(store, "all", DATA, clock.now - 600)
    snapshot = store.snapshot
    assert select(scrape(exposition), "ncentral_patch_approvals", report="all")
    configured[0] = (replace(REPORTS[0], max_data_age=60.0), REPORTS[1])
    stale = parse_samples(assert_same_as_stock(exposition, reports).decode())
    assert store.snapshot is snapshot
    assert select(stale, "ncentral_patch_approvals", report="all") == {}


@pytest.mark.parametrize("openmetrics", [False, True])
def test_gzip_is_one_member_that_decodes_to_the_plain_body(
    store: Store, exposition: Exposition, clock: Clock, openmetrics: bool
) -> None:
    fill(store, "all", DATA, clock.now)
    for _ in range(2):  # the cached part with a fresh live part each time
        zipped = metrics_body(exposition, gzipped=True, openmetrics=openmetrics)
        # One RFC 1952 member: what curl and browsers read (they stop after the first member).
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = decoder.decompress(zipped)
        assert decoder.eof
        assert decoder.unused_data == b""
        assert steady(text) == steady(metrics_body(exposition, openmetrics=openmetrics))
        assert gzip.decompress(zipped) == text  # the trailer's CRC-32 and length are checked here


class _Counted:
    """A live collector that counts its renders; its one input is `generation`."""

    def __init__(self) -> None:
        self.generation = 0
        self.collected = 0

    def collect(self) -> Iterator[Metric]:
        self.collected += 1
        yield GaugeMetricFamily("test_generation", "The test's input.", value=self.generation)

    def inputs(self) -> int:
        return self.generation


@pytest.mark.parametrize("openmetrics", [False, True])
def test_the_live_part_is_rendered_again_exactly_when_an_input_changes(
    store: Store, reports: CollectionCollector, clock: Clock, openmetrics: bool
) -> None:
    """The live part (reload status, server, failed state writes, intervals) is kept between scrapes while
    its inputs are equal, and each input's change reaches the next scrape, plain and gzip."""
    status = [ReloadStatus(successful=True, success_time=1000.0)]
    server: list[ServerInfo | None] = [None]
    intervals = [REPORTS]
    exposition = Exposition(store, reports, ExporterCollector(lambda: status[0]))
    exposition.register_runtime(RuntimeCollector(lambda: server[0], lambda: store.write_failures))
    exposition.register_runtime(ScheduleCollector(lambda: intervals[0]))
    counted = _Counted()
    exposition.register_runtime(counted)
    fill(store, "all", DATA, clock.now)

    def both() -> Samples:
        plain = metrics_body(exposition, openmetrics=openmetrics)
        assert gzip.decompress(metrics_body(exposition, gzipped=True, openmetrics=openmetrics)) == plain
        return parse_samples(plain.decode())

    for _ in range(3):
        assert sample(both(), "test_generation") == 0
    assert counted.collected == 1  # rendered once for six scrapes
    counted.generation = 1
    assert sample(both(), "test_generation") == 1
    assert counted.collected == 2
    assert sample(both(), "ncentral_patch_exporter_config_last_reload_successful") == 1

    status[0] = ReloadStatus(successful=False, success_time=1000.0)
    assert sample(both(), "ncentral_patch_exporter_config_last_reload_successful") == 0
    server[0] = ServerInfo("2025.4.0.12", "3.1.0")
    assert sample(both(), "ncentral_server_info", version="2025.4.0.12", api_version="3.1.0") == 1
    store.write_failures += 1
    assert sample(both(), "ncentral_patch_exporter_state_write_failures_total") == 1
    intervals[0] = (replace(REPORTS[0], interval=120.0), REPORTS[1])
    assert sample(both(), "ncentral_patch_report_interval_seconds", report="all") == 120


# --- through the real HTTP server ----------------------------------------------------------------------


@pytest.fixture
def served(clock: Clock, make_app: MakeApp) -> Iterator[tuple[Exporter, int]]:
    config = Config(ncentral=NCentralSettings(url="http://127.0.0.1:9", token="not-used-0123456789"),
                    collections=REPORTS)
    app = make_app(config)
    fill(app.store, "all", DATA, clock.now)
    server = WebServer(app, ("127.0.0.1", 0), "/metrics", WebConfig())
    server.start()
    try:
        yield app, server.address[1]
    finally:
        server.shutdown()


def fetch(port: int, encoding: str) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Accept-Encoding": encoding})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def test_gzip_over_http_decodes_to_the_plain_text(served: tuple[Exporter, int]) -> None:
    app, port = served
    plain_response, plain = fetch(port, "identity")
    assert plain_response.status == 200
    assert plain_response.getheader("Content-Encoding") is None
    assert plain_response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    zipped_response, zipped = fetch(port, "gzip")
    assert zipped_response.status == 200
    assert zipped_response.getheader("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in (zipped_response.getheader("Vary") or "")
    assert int(zipped_response.getheader("Content-Length") or -1) == len(zipped)
    assert len(zipped) < len(plain)
    expected = steady(stock(app.exposition, app.collector))
    assert steady(gzip.decompress(zipped)) == expected
    assert steady(plain) == expected


def test_a_new_run_reaches_http_scrapes_plain_and_gzipped(served: tuple[Exporter, int], clock: Clock) -> None:
    app, port = served
    fill(app.store, "all", replace(DATA, installs=()), clock.now + 5, runs=2)

    def runs_seen(encoding: str) -> bool:
        _, body = fetch(port, encoding)
        text = gzip.decompress(body) if encoding == "gzip" else body
        return sample(parse_samples(text.decode()), "ncentral_patch_report_runs_total", report="all") == 2

    wait_for(lambda: runs_seen("identity"), timeout=5)
    wait_for(lambda: runs_seen("gzip"), timeout=5)
    _, zipped = fetch(port, "gzip")
    assert select(parse_samples(gzip.decompress(zipped).decode()), "ncentral_patch_installs") == {}
    assert steady(gzip.decompress(zipped)) == steady(stock(app.exposition, app.collector))



def test_every_collection_exports_its_interval_and_a_reload_changes_it(make_app: MakeApp) -> None:
    """The staleness alert divides by it: one per report and for the customer scan, from the config in force
    (a reload changes it before any run), and in what --once prints."""
    ncentral = NCentralSettings(url="http://127.0.0.1:9", token="not-used-0123456789")
    configs = [Config(ncentral=ncentral, collections=(ReportSettings(name="all", interval=7200.0),
                                                      CustomerSettings(interval=86400.0)))]
    app = make_app(configs[0], load_config=lambda: configs[-1])

    def intervals(text: bytes) -> dict[str, float]:
        found = select(parse_samples(text.decode()), "ncentral_patch_report_interval_seconds")
        return {dict(labels)["report"]: value for labels, value in found.items()}

    assert intervals(metrics_body(app.exposition)) == {"all": 7200.0, CUSTOMERS: 86400.0}
    configs.append(replace(configs[0], collections=(ReportSettings(name="all", interval=1800.0),
                                                    ReportSettings(name="servers", interval=600.0),
                                                    CustomerSettings(interval=86400.0))))
    assert app.reload() is None
    assert intervals(metrics_body(app.exposition)) == {"all": 1800.0, "servers": 600.0, CUSTOMERS: 86400.0}
    assert intervals(app.exposition.render_collections()) == {"all": 1800.0, "servers": 600.0, CUSTOMERS: 86400.0}


def test_the_last_run_failure_reason_is_served_until_a_run_succeeds(sim: Simulator, make_app: MakeApp) -> None:
    config = Config(ncentral=NCentralSettings(url=sim.url, token=sim.jwt, retries=0),
                    collections=(ReportSettings(name="all", poll_interval=0.01),))
    app = make_app(config)

    def reasons() -> dict[frozenset[tuple[str, str]], float]:
        samples = scrape(app)
        return select(samples, "ncentral_patch_report_last_run_failure_reason")

    assert reasons() == {}  # no run yet
    sim.add_fault("403", endpoint="submit")
    assert not app.run("all")
    assert reasons() == {frozenset({("report", "all"), ("reason", "forbidden")}): 1.0}
    assert app.run("all")
    assert reasons() == {}
