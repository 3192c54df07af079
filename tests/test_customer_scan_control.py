"""The customer scan as one collection among the others, over real HTTP against the simulator: dispatched by
its kind (a report may be named "customers"), started again at once after a reload that lands inside it,
stopped between calls by shutdown and by its own timeout, on a worker of its own beside the reports; and
what `--once`, `--check-config` and the landing page say about it.

A reload or a stop that must land inside a scan is made by the client itself, once an answer has arrived
(no timing can arrange that): the client factory wraps the real client."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp
from helpers import (
    parse_samples,
    run_command,
    sample,
    scan_settings,
    scrape,
    select,
    wait_for,
    write_yaml,
)
from test_customers import EXPECTED, config, published, small_estate

from exporter.app import Exporter
from exporter.cli import build_parser
from exporter.client import NCentralClient, interruptible_sleep
from exporter.config import Config, NCentralSettings
from exporter.config_file import parse_config
from exporter.customers import CUSTOMERS, CustomerData, CustomerTotals
from exporter.landing import PageCache
from exporter.reports import ReportResult
from exporter.simulator import Simulator, demo_estate

Hook = Callable[[str], None]


def hooked(after_get: Hook) -> Callable[[NCentralSettings, threading.Event], NCentralClient]:
    """A client factory: real clients that call `after_get(path)` once each GET's answer has arrived."""

    class HookedClient(NCentralClient):
        def get(self, path: str, deadline: float) -> dict[str, Any]:
            body = super().get(path, deadline)
            after_get(path)
            return body

    return lambda settings, halt: HookedClient(settings, sleep=interruptible_sleep(halt))


@pytest.fixture
def other_sim() -> Iterator[Simulator]:
    simulator = Simulator().start()
    try:
        yield simulator
    finally:
        simulator.stop()


def once(action: Callable[[], object]) -> Callable[[], None]:
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


# --- dispatch by kind -----------------------------------------------------------------------------------


def test_a_report_named_customers_runs_when_the_scan_is_off(sim: Simulator, make_app: MakeApp) -> None:
    document = config(sim)
    del document[CUSTOMERS]
    document["reports"] = [{"name": CUSTOMERS, "poll_interval": "10ms", "timeout": "10s"},
                           {"name": "all", "poll_interval": "10ms", "timeout": "10s"}]
    app = make_app(document)
    app.start()
    wait_for(lambda: app.not_ready() is None)
    state = app.store.snapshot[CUSTOMERS]
    assert isinstance(state.result, ReportResult) and state.result.data is not None  # a report's, not a scan's
    assert sim.count("submit") == 2
    assert sim.count("devices") == 0


# --- a reload inside a scan -----------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["n-central", "exclude"])
def test_a_reload_inside_a_scan_starts_it_again_at_once_with_the_new_settings(
    sim: Simulator, other_sim: Simulator, change: str, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    """The scan under way stops before its next call (no more calls to the old server or for the old scope)
    and scans again at once; its dropped result is not logged as a success, and only the new one counts."""
    sim.set_estate(demo_estate())  # 40 customers: the old scan would make 40 active-issues calls
    other_sim.set_estate(small_estate())
    old = parse_config(config(sim), env={})
    if change == "n-central":
        new = parse_config(config(other_sim), env={})
        expected = EXPECTED
    else:
        sim.set_estate(small_estate())
        new = parse_config(config(sim, {"exclude": "^Beta"}), env={})
        expected = {key: value for key, value in EXPECTED.items() if key[1] != "Beta GmbH"}
    holder: list[Exporter] = []
    reload_once = once(lambda: holder[0].reload())

    def after_get(path: str) -> None:
        if "active-issues" in path:
            reload_once()

    app = make_app(old, lambda: new, client_factory=hooked(after_get))
    holder.append(app)
    with caplog.at_level(logging.INFO, logger="exporter.customers"):
        assert app.run(CUSTOMERS)
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("customer scan succeeded") == 1
    assert messages.count("configuration reloaded during the customer scan; starting it again") == 1
    assert published(app)[0] == expected
    state = app.store.snapshot[CUSTOMERS]
    assert state.runs_total == 1 and state.last_run_success
    assert state.fingerprint == scan_settings(new).fingerprint
    old_calls = sim.count("active_issues")
    if change == "n-central":
        assert other_sim.count("devices") >= 1
        assert old_calls < 10, "the scan against the old server stopped before asking every customer"
    else:
        # The old scope's scan stopped early; the new one asked each of the four kept customers once.
        assert old_calls < 5 + 10


# --- reports do not wait behind the scan -------------------------------------------------------------------


def test_reports_and_readiness_do_not_wait_behind_a_long_scan(sim: Simulator, make_app: MakeApp) -> None:
    sim.set_estate(small_estate())
    entered, release = threading.Event(), threading.Event()

    def after_get(path: str) -> None:
        if path.startswith("/api/devices"):
            entered.set()
            release.wait(30)  # the scan is as long as the test wants (a bound only against a hang)

    app = make_app(config(sim), client_factory=hooked(after_get))
    try:
        app.start()
        assert entered.wait(10)
        wait_for(lambda: app.not_ready() is None)  # the report's first run went past the blocked scan
        runs = app.store.snapshot["all"].runs_total
        app.scheduler.schedule(fresh=["all"])  # and so does a later one
        wait_for(lambda: app.store.snapshot["all"].runs_total == runs + 1)
        assert app.store.snapshot[CUSTOMERS].runs_total == 0  # the scan is still under way
    finally:
        release.set()
    wait_for(lambda: app.store.snapshot[CUSTOMERS].runs_total == 1)
    assert published(app)[0] == EXPECTED


# --- the timeout and shutdown, between calls -------------------------------------------------------------


def test_a_scan_past_its_timeout_asks_nothing_more_and_fails_as_timeout(
    sim: Simulator, make_app: MakeApp
) -> None:
    sim.set_estate(small_estate())
    sim.set_page_cap(2)  # 12 devices → 6 pages
    offset = [0.0]

    def after_get(path: str) -> None:
        offset[0] = 3601.0  # the first page's answer came back after the 10m timeout (and the 1h interval)

    app = make_app(config(sim), client_factory=hooked(after_get),
                   monotonic=lambda: time.monotonic() + offset[0])
    assert not app.run(CUSTOMERS)
    state = app.store.snapshot[CUSTOMERS]
    assert state.last_reason == "timeout"
    assert state.last_error is not None and "600s timeout" in state.last_error
    samples = scrape(app)
    assert sample(samples, "ncentral_patch_report_failures_total", report=CUSTOMERS, reason="timeout") == 1
    assert sim.count("devices") == 1
    assert sim.count("active_issues") == 0


def test_timeout_is_a_prometheus_duration_defaulting_to_10m(sim: Simulator) -> None:
    assert scan_settings(parse_config(config(sim), env={})).timeout == 600
    assert scan_settings(parse_config(config(sim, {"timeout": "1h30m"}), env={})).timeout == 5400
    with pytest.raises(Exception, match=r"customers\.timeout"):
        parse_config(config(sim, {"timeout": "soon"}), env={})


def test_shutdown_stops_a_scan_before_its_next_call(
    sim: Simulator, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    sim.set_estate(demo_estate())  # 40 customers
    holder: list[Exporter] = []
    halt_once = once(lambda: holder[0].halt())

    def after_get(path: str) -> None:
        if "active-issues" in path:
            halt_once()

    app = make_app(config(sim), client_factory=hooked(after_get))
    holder.append(app)
    with caplog.at_level(logging.INFO, logger="exporter.customers"):
        assert not app.run(CUSTOMERS)
    assert "customer scan interrupted by shutdown" in [record.getMessage() for record in caplog.records]
    # The call whose answer led to the halt and the two on the wire by then (one took its slot), no more.
    assert sim.count("active_issues") <= 3
    assert app.store.snapshot[CUSTOMERS].runs_total == 0  # nothing recorded


# --- --once, --check-config, --help -------------------------------------------------------------------------


def test_once_counts_a_failed_scan_and_prints_what_the_run_learnt(sim: Simulator, tmp_path: Path) -> None:
    sim.add_fault("403", endpoint="devices", count=None)
    path = write_yaml(tmp_path / "config.yaml", config(sim))
    result = run_command("--config.file", str(path), "--once")
    assert result.returncode == 1, result.stderr  # the report succeeded; the scan did not
    samples = parse_samples(result.stdout)
    assert sample(samples, "ncentral_patch_report_last_run_success", report="all") == 1
    assert sample(samples, "ncentral_patch_report_failures_total", report=CUSTOMERS, reason="forbidden") == 1
    assert select(samples, "ncentral_server_info")
    assert sample(samples, "ncentral_patch_exporter_state_write_failures_total") == 0
    assert not any(name.startswith(("process_", "python_")) for name, _ in samples)
    help_text = " ".join(build_parser().format_help().split())
    assert "each report, and each scan that is configured" in help_text


def test_check_config_mentions_the_customer_scan(sim: Simulator, tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "config.yaml", config(sim, {"interval": "2h", "timeout": "5m"}))
    result = run_command("--config.file", str(path), "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK (1 report(s): all; customer scan every 7200s, timeout 300s)")


# --- the landing page -------------------------------------------------------------------------------------


def test_landing_page_sums_and_sorts_the_customers_once_per_scan(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, make_app: MakeApp
) -> None:
    sim.set_estate(small_estate())
    app = make_app(config(sim))
    sums: list[CustomerData] = []
    per_customer = CustomerData.per_customer

    def counted(data: CustomerData) -> list[CustomerTotals]:
        sums.append(data)
        return per_customer(data)

    monkeypatch.setattr(CustomerData, "per_customer", counted)
    cache = PageCache()
    current: Config = app.config

    def page() -> str:
        return cache.page(current, app.store.snapshot, app.next_runs(), "/metrics", False, time.time()).decode()

    assert app.run(CUSTOMERS)
    first = page()
    assert page() == first and "Beta GmbH" in first
    assert len(sums) == 1
    assert app.run(CUSTOMERS)  # a new result: summed once more
    page()
    page()
    assert len(sums) == 2
