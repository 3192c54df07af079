"""Run control: the one owner of the running config, the outcomes of a run, the workers, the shutdown."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp
from helpers import (
    ExporterProcess,
    config_document,
    make_config,
    report_result,
    reports_of,
    wait_for,
    with_report,
    write_yaml,
)

from exporter.client import NCentralClient, interruptible_sleep
from exporter.config import Config
from exporter.errors import ReportFailed
from exporter.live_client import LiveClient
from exporter.report import PollResult
from exporter.reports import ReportSettings, Runner
from exporter.running_config import RunningConfig
from exporter.simulator import Simulator
from exporter.store import Store, server_identity
from exporter.workers import DaemonPool


def run_config(sim: Simulator, *reports: ReportSettings) -> Config:
    """N-central's default timeouts and retries, and `reports` (or one that polls fast)."""
    return make_config(sim, reports=reports or (ReportSettings(name="all", poll_interval=0.01, timeout=10),),
                       request_timeout=30.0, retries=4)


# --- the running config ------------------------------------------------------------------------------


def test_a_swap_tells_each_listener_once_and_then_everyone_asks_the_new_config(sim: Simulator) -> None:
    old = run_config(sim)
    new = with_report(old, interval=60)
    running = RunningConfig(old)
    told: list[tuple[Config, Config]] = []
    running.on_swap(lambda before, after: told.append((before, after)))
    assert running.swap(new) is old
    assert running.get() is new
    assert told == [(old, new)]


def test_a_new_n_central_replaces_the_client_and_halts_only_its_own_waits(sim: Simulator) -> None:
    old = run_config(sim)
    new = replace(old, ncentral=replace(old.ncentral, request_timeout=5.0))
    running = RunningConfig(old)
    own = LiveClient(running)
    _, first = own.current()
    first_halt = own.halt_of(first)
    assert first_halt is not None
    running.swap(replace(old, collections=()))  # the same N-central settings: the clients stay
    assert own.current()[1] is first
    running.swap(new)
    config, second = own.current()
    assert config is new
    assert second is not first
    assert second.settings == new.ncentral
    assert first_halt.is_set()  # a run waiting on the old client starts afresh at once
    assert own.halt_of(first) is None
    second_halt = own.halt_of(second)
    assert second_halt is not None
    assert not second_halt.is_set()
    own.halt()
    assert second_halt.is_set()
    own.close()


# --- the outcomes of a run ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["submit", "poll", "failing poll"])
def test_a_reload_inside_a_call_is_refused_by_the_store_and_the_run_starts_afresh(
    sim: Simulator, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses what the run records after a reload changed its filters; the run starts afresh
    with the new filters. The reload lands inside a call to N-central, which no timing can arrange: the
    client calls it once its answer has arrived."""
    old = run_config(sim)
    new = with_report(old, patch_approvals=("Declined",))
    running = RunningConfig(old)
    store = Store(old.collections, server=server_identity(old.ncentral))
    reloads: list[str] = []

    def reload_once(where: str) -> None:
        if call.endswith(where) and not reloads:
            reloads.append(where)
            store.reconfigure(new.collections, server=server_identity(new.ncentral))
            running.swap(new)
            if call.startswith("failing"):
                raise ReportFailed("the run fails after the reload: recording the failure is refused")

    class ReloadingClient(NCentralClient):
        def submit(self, body: Mapping[str, Any], deadline: float) -> int:
            report_id = super().submit(body, deadline)
            reload_once("submit")
            return report_id

        def poll(self, report_id: int, deadline: float) -> PollResult:
            result = super().poll(report_id, deadline)
            reload_once("poll")
            return result

    runner = Runner(running, store, threading.Event(),
                    client_factory=lambda settings, halt: ReloadingClient(settings, sleep=interruptible_sleep(halt)))
    try:
        with caplog.at_level(logging.INFO, logger="exporter.reports"):
            assert runner.run("all")
    finally:
        runner.close()
    assert reloads == [call.split()[-1]]
    restart = "report settings changed during the run; starting it afresh"
    restarts = [r for r in caplog.records if r.getMessage() == restart]
    assert len(restarts) == 1
    submits = [r.json() for r in sim.requests if r.endpoint == "submit"]
    assert len(submits) == 2
    assert "patchApprovals" not in submits[0]
    assert submits[1]["patchApprovals"] == ["Declined"]
    state = store.snapshot["all"]
    assert state.fingerprint == reports_of(new)[0].fingerprint
    assert state.runs_total == 1  # the refused run left no count
    assert state.last_run_success
    assert report_result(state).data is not None


# --- the scheduler asks the running config --------------------------------------------------------------


def test_a_reload_reschedules_what_changed_removes_what_went_and_keeps_the_rest(
    sim: Simulator, make_app: MakeApp,
) -> None:
    a = ReportSettings(name="a", interval=3600, poll_interval=0.01, timeout=10)
    b = replace(a, name="b", patch_approvals=("No Approval",))
    c = replace(a, name="c", patch_approvals=("Declined",))
    old = run_config(sim, a, b, c)
    new = replace(old, collections=(replace(a, interval=1800), b))
    app = make_app(old, lambda: new)
    app.start()
    wait_for(lambda: all(state.runs_total == 1 for state in app.store.snapshot.values()))
    before = app.next_runs()
    reloaded_at = dt.datetime.now(dt.UTC)
    assert app.reload() is None
    wait_for(lambda: app.store.snapshot["a"].runs_total == 2)  # a new interval runs at once
    after = app.next_runs()
    app.shutdown()
    assert set(after) == {"a", "b"}
    assert after["b"] == before["b"]  # unchanged: its schedule goes on as it was
    next_a = after["a"]
    assert next_a is not None
    assert dt.timedelta(seconds=1800 - 60) < next_a - reloaded_at < dt.timedelta(seconds=1800 + 60)


# --- the workers ---------------------------------------------------------------------------------------


def test_the_daemon_pool_runs_in_order_hands_back_errors_and_cancels_what_waits() -> None:
    pool = DaemonPool(1, "test")
    release = threading.Event()
    done: list[int] = []
    blocked = pool.submit(release.wait, 10)
    first = pool.submit(done.append, 1)
    failing = pool.submit(int, "x")
    assert pool.join(0.05) is False  # still running (and not shut down)
    release.set()
    assert first.result(5) is None
    with pytest.raises(ValueError, match="invalid literal"):
        failing.result(5)
    assert blocked.result(5) is True
    assert done == [1]

    release.clear()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold)
    queued = pool.submit(done.append, 2)
    assert started.wait(5)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(done.append, 3)
    assert pool.join(0.05) is False  # the job under way is not waited for beyond the bound
    release.set()
    assert pool.join(5) is True
    assert done == [1]


def test_the_pool_threads_do_not_hold_the_exit() -> None:
    pool = DaemonPool(2, "test-daemon")
    try:
        names = {t.name: t.daemon for t in threading.enumerate() if t.name.startswith("test-daemon_")}
        assert names == {"test-daemon_0": True, "test-daemon_1": True}
    finally:
        pool.shutdown()


# --- shutdown --------------------------------------------------------------------------------------------


def test_sigterm_while_a_run_is_inside_a_slow_call_exits_0_with_the_state_written(
    sim: Simulator, tmp_path: Path
) -> None:
    """The run is not waited for beyond a bound: its call ends by its own deadline, long after."""
    document = config_document(sim, timeout="5m")
    document["ncentral"]["request_timeout"] = "60s"
    sim.add_fault("slow", endpoint="submit", delay=60)
    config = write_yaml(tmp_path / "config.yaml", document)
    state = tmp_path / "state.json"
    exporter = ExporterProcess(tmp_path, "--config.file", str(config), "--storage.path", str(state))
    try:
        exporter.wait_healthy()
        wait_for(lambda: sim.count("submit") >= 1)
        exporter.signal(signal.SIGTERM)
        assert exporter.process.wait(timeout=10) == 0
    finally:
        exporter.stop()
    log = exporter.log()
    assert "a run is still inside an HTTP call to N-central; not waiting for it" in log
    assert "msg=stopped" in log.rstrip().splitlines()[-1]  # the last word: nothing after the orderly end
    assert "Traceback" not in log
    assert json.loads(state.read_text())["collections"]["all"]["last_run_time"] is None  # the cut run recorded nothing
    second = ExporterProcess(tmp_path, "--config.file", str(config), "--storage.path", str(state))
    try:
        second.wait_healthy()  # the state file's lock was released
    finally:
        sim.clear_faults()
        assert second.stop() == 0
