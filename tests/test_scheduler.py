"""The APScheduler wiring, against the simulator: first run at start-up, one report at a time."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from dataclasses import replace

from conftest import MakeApp
from helpers import wait_for

from exporter.config import Config, NCentralSettings
from exporter.reports import ReportSettings
from exporter.scheduler import Scheduler
from exporter.simulator import FIRST_REPORT_ID, Simulator


def test_reports_run_at_start_then_on_their_interval_one_at_a_time(sim: Simulator, make_app: MakeApp) -> None:
    sim.set_generation_time(0.1)
    report = ReportSettings(name="a", interval=0.2, poll_interval=0.02, poll_max_interval=0.02, timeout=10)
    config = Config(
        ncentral=NCentralSettings(url=sim.url, token=sim.jwt, retry_backoff=0.01),
        collections=(report, replace(report, name="b", patch_approvals=("No Approval",))),
    )
    app = make_app(config)
    app.start()
    wait_for(lambda: all(state.runs_total >= 3 for state in app.store.snapshot.values()))
    app.shutdown()
    # Each report is in flight from its submit to its last poll; no two of those windows overlap, so
    # N-central never has two of this exporter's reports being generated at once.
    requests = sim.requests
    submits = [index for index, request in enumerate(requests) if request.endpoint == "submit"]
    windows = []
    for number, start in enumerate(submits):
        path = f"/api/report/{FIRST_REPORT_ID + number}"
        polls = [index for index, request in enumerate(requests) if request.path == path]
        windows.append((start, polls[-1] if polls else len(requests)))
    assert len(windows) >= 6
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end < start, "a report was submitted while another was still in flight"
    names = {"patchApprovals" in requests[index].json() for index in submits}
    assert names == {True, False}  # both reports ran


def test_the_first_run_starts_at_once_and_the_next_one_an_interval_later(sim: Simulator, make_app: MakeApp) -> None:
    report = ReportSettings(name="a", interval=3600, poll_interval=0.01)
    app = make_app(Config(ncentral=NCentralSettings(url=sim.url, token=sim.jwt), collections=(report,)))
    before = dt.datetime.now(dt.UTC)
    app.start()
    wait_for(lambda: app.store.snapshot["a"].runs_total == 1)
    after = dt.datetime.now(dt.UTC)
    next_run = app.next_runs()["a"]
    app.shutdown()
    # The first run was due at start-up (between `before` and `after`), the next one an interval later.
    interval = dt.timedelta(seconds=3600)
    assert next_run is not None
    assert before + interval <= next_run <= after + interval


def test_a_reload_removes_dropped_jobs_and_reschedules_a_changed_interval(sim: Simulator, make_app: MakeApp) -> None:
    a = ReportSettings(name="a", interval=3600, poll_interval=0.01)
    b = replace(a, name="b", patch_approvals=("No Approval",))
    ncentral = NCentralSettings(url=sim.url, token=sim.jwt)
    new = Config(ncentral=ncentral, collections=(replace(a, interval=7200),))
    app = make_app(Config(ncentral=ncentral, collections=(a, b)), lambda: new)
    app.start()
    wait_for(lambda: all(state.runs_total == 1 for state in app.store.snapshot.values()))
    assert app.next_runs().keys() == {"a", "b"}
    before = dt.datetime.now(dt.UTC)
    assert app.reload() is None
    assert app.next_runs().keys() == {"a"}  # b's job is gone
    wait_for(lambda: app.store.snapshot["a"].runs_total == 2)  # a changed interval runs at once
    after = dt.datetime.now(dt.UTC)
    next_run = app.next_runs()["a"]
    app.shutdown()
    assert set(app.store.snapshot) == {"a"}
    interval = dt.timedelta(seconds=7200)
    assert next_run is not None
    assert before + interval <= next_run <= after + interval


class _Collection:
    def __init__(self, name: str) -> None:
        self.name, self.interval, self.kind = name, 3600.0, "toy"


def test_a_run_asked_for_as_the_last_one_ends_runs_then_and_only_if_nothing_was_recorded_since() -> None:
    # APScheduler skips a job whose instance is still running; a reload's "run it at once" must not be lost
    # to that, nor run twice when the run under way already recorded a result after the ask.
    recorded: dict[str, object] = {"a": object()}
    runs: list[str] = []
    ending, release = threading.Event(), threading.Event()

    def run(name: str) -> None:
        runs.append(name)
        if len(runs) == 1:
            ending.set()  # the run has recorded what it will; it is ending
            assert release.wait(10)

    scheduler = Scheduler(run, lambda: [_Collection("a")], recorded.get)
    scheduler.start()
    try:
        assert ending.wait(10)
        scheduler.schedule(fresh=["a"])  # asked for at once while the first run is still ending
        release.set()
        wait_for(lambda: len(runs) == 2)  # not an hour later
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
        wait_for(lambda: (scheduler.next_runs()["a"] or soon) > soon)  # nothing more is due at once
    finally:
        scheduler.shutdown()
        assert scheduler.join(10)
    assert runs == ["a", "a"]  # the ask ran once, not also as APScheduler's own run

    runs.clear()
    ending.clear()
    release.clear()

    def run_that_records(name: str) -> None:
        runs.append(name)
        if len(runs) == 1:
            ending.set()
            assert release.wait(10)
            recorded["a"] = object()  # a reload interrupted it and it ran with the new settings: recorded

    scheduler = Scheduler(run_that_records, lambda: [_Collection("a")], recorded.get)
    scheduler.start()
    try:
        assert ending.wait(10)
        scheduler.schedule(fresh=["a"])
        release.set()
    finally:
        scheduler.shutdown()
        assert scheduler.join(10)  # the job, and any run it would add, has ended
    assert runs == ["a"]
