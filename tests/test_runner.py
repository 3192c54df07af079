"""Every N-central fault, run through the real runner, store and exposition against the simulator."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import MakeApp
from helpers import (
    Samples,
    make_config,
    report_result,
    reports_of,
    sample,
    scrape,
    select,
    wait_for,
    with_report,
)

from exporter.app import Exporter
from exporter.client import NCentralClient, interruptible_sleep
from exporter.config import Config
from exporter.errors import REASONS
from exporter.report import PollResult
from exporter.simulator import DEFAULT_DATA, Simulator


def runner_config(sim: Simulator, **report: object) -> Config:
    """The quick report `all` with `report`'s changes; a 1 s request timeout and a 1 MiB answer cap."""
    return make_config(sim, report=report, request_timeout=1.0, max_response_size=2**20)


@pytest.fixture
def exporter(sim: Simulator, make_app: MakeApp) -> Exporter:
    return make_app(runner_config(sim))


def approvals(samples: Samples) -> dict[frozenset[tuple[str, str]], float]:
    return select(samples, "ncentral_patch_approvals")


def with_jwt(jwt: str) -> Callable[[Simulator], None]:
    def set_jwt(sim: Simulator) -> None:
        sim.jwt = jwt
        sim.revoke_tokens()

    return set_jwt


def html_on_authenticate(sim: Simulator) -> None:
    sim.revoke_tokens()
    sim.add_fault("html", endpoint="authenticate", count=None)


FAULTS: dict[str, tuple[Callable[[Simulator], None], str]] = {
    "reset": (lambda s: s.add_fault("reset", endpoint="poll", count=None), "connection"),
    "read-timeout": (lambda s: s.add_fault("slow", endpoint="poll", count=None, delay=3), "connection"),
    "refused": (lambda s: s.stop(), "connection"),
    "429": (lambda s: s.add_fault("429", endpoint="poll", count=None), "rate_limited"),
    "429-submit": (lambda s: s.add_fault("429", endpoint="submit", count=None, retry_after="0"), "rate_limited"),
    "500-submit": (lambda s: s.add_fault("500", endpoint="submit", count=None), "http"),
    "502-poll": (lambda s: s.add_fault("502", endpoint="poll", count=None), "http"),
    "400": (lambda s: s.add_fault("400", endpoint="submit", count=None), "http"),
    "bad-jwt": (with_jwt("a-jwt-the-exporter-does-not-have"), "auth"),
    "401-always": (lambda s: s.add_fault("401", endpoint="poll", count=None), "auth"),
    "403": (lambda s: s.add_fault("403", endpoint="submit", count=None), "forbidden"),
    "404": (lambda s: s.add_fault("404", endpoint="submit", count=None), "not_supported"),
    "failed": (lambda s: s.set_outcome("FAILED"), "report_failed"),
    "aborted": (lambda s: s.set_outcome("ABORTED"), "report_failed"),
    "never-completes": (lambda s: s.set_outcome("IN_PROGRESS"), "timeout"),
    "html": (lambda s: s.add_fault("html", endpoint="poll", count=None), "invalid_response"),
    "garbage": (lambda s: s.add_fault("garbage", endpoint="poll", count=None), "invalid_response"),
    "truncated": (lambda s: s.add_fault("truncated", endpoint="poll", count=None), "invalid_response"),
    "error-body": (lambda s: s.add_fault("error_body", endpoint="poll", count=None), "invalid_response"),
    "wrong-types": (lambda s: s.add_fault("wrong_types", endpoint="poll", count=None), "invalid_response"),
    "negative": (lambda s: s.add_fault("negative", endpoint="poll", count=None), "invalid_response"),
    "not-integer": (lambda s: s.add_fault("not_integer", endpoint="poll", count=None), "invalid_response"),
    "no-report-id": (lambda s: s.add_fault("no_report_id", endpoint="submit", count=None), "invalid_response"),
    "huge": (lambda s: s.add_fault("huge", endpoint="poll", count=None), "invalid_response"),
    "auth-html": (html_on_authenticate, "invalid_response"),
}


# What the one log line must tell the operator, for every fault (no report ids: they vary).
FAULT_MESSAGES = {
    "reset": "connection reset or closed without an answer",
    "read-timeout": "no answer from 127.0.0.1:",
    "refused": "POST /api/report/patch-comparison at 127.0.0.1:",
    "429": "HTTP 429 rate limited",
    "429-submit": "POST /api/report/patch-comparison: HTTP 429 rate limited",
    "500-submit": "POST /api/report/patch-comparison: HTTP 500 (",
    "502-poll": ": HTTP 502 (",
    "400": "POST /api/report/patch-comparison: HTTP 400 (",
    "bad-jwt": "invalid or expired",
    "401-always": "even with a fresh access token",
    "403": "must be created at the SO (service organization) level",
    "404": "needs N-central 2025.4 or later",
    "failed": "N-central reports the report FAILED",
    "aborted": "N-central reports the report ABORTED",
    "never-completes": "still IN_PROGRESS after the 0.5s timeout",
    "html": "answer is not JSON (text/html",
    "garbage": "answer is not JSON (application/json)",
    "truncated": "answer is not JSON (application/json): '{\"reportId\"",
    "error-body": "unknown reportStatus None",
    "wrong-types": "deviceClassSummaries: expected a list, got str",
    "negative": "count is negative: -4",
    "not-integer": "count is not an integer: 2.5",
    "no-report-id": "submit answer has no integer reportId",
    "huge": "over the 1048576-byte cap",
    "auth-html": "POST /api/auth/authenticate: HTTP 200 answer is not JSON (text/html",
}


def test_every_fault_has_its_expected_message() -> None:
    assert FAULT_MESSAGES.keys() == FAULTS.keys()


def heal(sim: Simulator, jwt: str) -> None:
    sim.clear_faults()
    sim.set_outcome("COMPLETED")
    sim.jwt = jwt
    if not sim_listening(sim):
        sim.start()


def sim_listening(sim: Simulator) -> bool:
    """Whether the simulator accepts connections (the "refused" fault stops it)."""
    address = urlsplit(sim.url)
    try:
        with socket.create_connection((address.hostname or "", address.port or 443), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_keeps_data_counts_reason_and_recovers(
    sim: Simulator, fault: str, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    inject, reason = FAULTS[fault]
    config = runner_config(sim, timeout=0.5 if fault == "never-completes" else 5.0)
    if fault == "read-timeout":
        # A call waits at least 1 s whatever request_timeout says; one attempt instead of three is enough here.
        config = replace(config, ncentral=replace(config.ncentral, retries=0))
    app = make_app(config)
    jwt = sim.jwt
    try:
        assert app.run("all") is True
        good = scrape(app)
        good_data = approvals(good)
        assert len(good_data) == 15

        inject(sim)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert app.run("all") is False
        failed = scrape(app)
        assert sample(failed, "ncentral_patch_report_last_run_success", report="all") == 0
        assert sample(failed, "ncentral_patch_report_runs_total", report="all") == 2
        for known in REASONS:
            expected = 1 if known == reason else 0
            assert sample(failed, "ncentral_patch_report_failures_total", report="all", reason=known) == expected
        assert approvals(failed) == good_data  # the last good data stays
        assert sample(failed, "ncentral_patch_report_last_success_timestamp_seconds", report="all") == sample(
            good, "ncentral_patch_report_last_success_timestamp_seconds", report="all"
        )
        outcome_lines = [r for r in caplog.records if r.getMessage() == "report run failed"]
        assert len(outcome_lines) == 1
        line = outcome_lines[0].__dict__
        assert line["reason"] == reason
        assert line["report"] == "all"
        assert {"status", "report_id", "error"} <= set(line)
        assert FAULT_MESSAGES[fault] in line["error"], line["error"]

        heal(sim, jwt)
        assert app.run("all") is True
        recovered = scrape(app)
        assert sample(recovered, "ncentral_patch_report_last_run_success", report="all") == 1
        assert sample(recovered, "ncentral_patch_report_runs_total", report="all") == 3
    finally:
        heal(sim, jwt)


def test_values_equal_the_report_and_missing_keys_are_zero(sim: Simulator, exporter: Exporter) -> None:
    tricky = 'Servers "Core" \\ Ünïcødé \u2013 東京'
    sim.set_data({
        "deviceClassSummaries": [
            {"deviceClass": tricky, "approvalStatusCounts": {"noApproval": 10, "approvedForInstall": 5}},
            {"deviceClass": "Laptops - Windows", "approvalStatusCounts": {"declined": 3, "newStatusKey": 4}},
        ],
        "futureField": {"ignored": True},
    })
    assert exporter.run("all")
    data = approvals(scrape(exporter))
    assert data == {
        frozenset({("report", "all"), ("device_class", tricky), ("approval_status", status)}): value
        for status, value in {
            "no_approval": 10, "approved_for_install": 5, "declined": 0, "not_approved": 0, "approved_for_removal": 0,
        }.items()
    } | {
        frozenset({("report", "all"), ("device_class", "Laptops - Windows"), ("approval_status", status)}): value
        for status, value in {
            "no_approval": 0, "approved_for_install": 0, "declined": 3, "not_approved": 0, "approved_for_removal": 0,
            "new_status_key": 4,
        }.items()
    }


def test_installs_are_exported_with_normalised_labels(sim: Simulator, exporter: Exporter) -> None:
    assert exporter.run("all")
    samples = scrape(exporter)
    assert sample(
        samples, "ncentral_patch_installs", report="all", approval_status="approved_for_install",
        install_status="installed_with_errors", patch_type="security_updates",
    ) == 6
    assert sample(
        samples, "ncentral_patch_installs", report="all", approval_status="approved_for_install",
        install_status="aborted", patch_type="definition_updates",
    ) == 2


def test_a_device_class_dropped_by_the_next_report_disappears(sim: Simulator, exporter: Exporter) -> None:
    assert exporter.run("all")
    assert any(("device_class", "Servers - Windows") in key for key in approvals(scrape(exporter)))
    data = json.loads(json.dumps(DEFAULT_DATA))
    data["deviceClassSummaries"] = data["deviceClassSummaries"][:2]
    sim.set_data(data)
    assert exporter.run("all")
    classes = {dict(key)["device_class"] for key in approvals(scrape(exporter))}
    assert classes == {"Laptops - Windows", "Workstations - Windows"}


def test_before_the_first_run_only_outcome_metrics(exporter: Exporter) -> None:
    samples = scrape(exporter)
    assert approvals(samples) == {}
    assert sample(samples, "ncentral_patch_report_last_run_success", report="all") == 0
    assert sample(samples, "ncentral_patch_report_runs_total", report="all") == 0
    assert all(
        sample(samples, "ncentral_patch_report_failures_total", report="all", reason=r) == 0 for r in REASONS
    )
    assert exporter.not_ready() is not None


def test_submitted_payload_matches_the_config(sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(runner_config(
        sim, start_date="2025-08-01", install_statuses=("Installed", "Failed"),
        patch_categories=("Security Updates",),
    ))
    assert app.run("all")
    submit = next(r for r in sim.requests if r.endpoint == "submit")
    assert submit.headers["Content-Type"] == "application/json"
    assert submit.json() == {
        "startDate": "2025-08-01", "installStatuses": ["Installed", "Failed"], "patchCategories": ["Security Updates"],
    }


def test_max_data_age_drops_old_data(sim: Simulator, make_app: MakeApp) -> None:
    now = [1_000_000.0]
    app = make_app(runner_config(sim, max_data_age=60.0), wall=lambda: now[0])
    assert app.run("all")
    assert approvals(scrape(app))
    now[0] += 61
    samples = scrape(app)
    assert approvals(samples) == {}
    assert sample(samples, "ncentral_patch_report_last_success_timestamp_seconds", report="all") == 1_000_000.0


def test_polling_is_polite_for_a_five_minute_report(make_app: MakeApp) -> None:
    """A 300 s report: at most 15 polls, and COMPLETED seen within 10 % of the generation time."""
    clock = [0.0]
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    with Simulator(jwt="polite-jwt-0123456789", generation_time=300.0, clock=lambda: clock[0]) as sim:
        app = make_app(runner_config(sim, poll_interval=2.0, poll_max_interval=30.0, timeout=1800.0),
                       sleep=fake_sleep, monotonic=lambda: clock[0])
        try:
            assert app.run("all")
        finally:
            app.shutdown()
        assert sleeps[:6] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
        assert sim.count("poll") <= 15
        assert 300.0 <= clock[0] <= 330.0


def test_a_report_that_never_completes_times_out_within_its_timeout(sim: Simulator, make_app: MakeApp) -> None:
    clock = [0.0]

    def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    sim.set_outcome("IN_PROGRESS")
    app = make_app(runner_config(sim, poll_interval=2.0, poll_max_interval=30.0, timeout=600.0),
                   sleep=fake_sleep, monotonic=lambda: clock[0])
    assert not app.run("all")
    assert app.store.snapshot["all"].last_reason == "timeout"
    assert clock[0] == pytest.approx(600.0)


def test_state_file_serves_old_data_and_resumes_in_flight(sim: Simulator, tmp_path: Path, make_app: MakeApp) -> None:
    config = replace(runner_config(sim), storage_path=str(tmp_path / "state.json"))
    first = make_app(config)
    assert first.run("all")
    good = approvals(scrape(first))
    first.shutdown()

    second = make_app(config)
    assert approvals(scrape(second)) == good
    assert second.not_ready() is None
    second.shutdown()

    stored = json.loads((tmp_path / "state.json").read_text())
    report = stored["collections"]["all"]
    report["result"]["in_flight"] = {"report_id": 575523, "submitted_at": report["last_success_time"]}
    (tmp_path / "state.json").write_text(json.dumps(stored))
    third = make_app(config)
    submits = sim.count("submit")
    assert third.run("all")
    assert sim.count("submit") == submits
    assert sim.requests[-1].path == "/api/report/575523"
    third.shutdown()


def test_changed_filters_invalidate_the_stored_result(sim: Simulator, tmp_path: Path, make_app: MakeApp) -> None:
    config = replace(runner_config(sim), storage_path=str(tmp_path / "state.json"))
    first = make_app(config)
    assert first.run("all")
    first.shutdown()
    changed = with_report(config, patch_approvals=("Declined",))
    second = make_app(changed)
    assert approvals(scrape(second)) == {}
    second.shutdown()


CORRUPT_STATES = [
    "{not json",
    '{"version": 1, "reports": {"all": {"fingerprint": 3, "data": 5}}}',
    "",
    "[]",
    '{"version": 1, "reports": {"all": {"fingerprint": "x", "data": null, "last_reason": 5}}}',
    '{"version": 1, "reports": {"all": {"fingerprint": "x", "in_flight": {"report_id": "7", "submitted_at": 1}}}}',
    '{"version": 1, "reports": {"all": {"fingerprint": "x", "last_success_time": NaN}}}',
    '{"version": 1, "reports": {"all": {"fingerprint": "x", "data": {"approvals": [["\\ud800", "declined", 1]],'
    ' "installs": []}}}}',
]


@pytest.mark.parametrize("content", CORRUPT_STATES)
def test_corrupt_state_file_is_ignored(
    sim: Simulator, tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    app = make_app(replace(runner_config(sim), storage_path=str(path)))
    assert any(
        r.getMessage() in ("ignoring unreadable state file", "ignoring an unreadable entry of the state file")
        for r in caplog.records
    )
    assert app.run("all")
    app.shutdown()
    assert json.loads(path.read_text())["collections"]["all"]["result"]["data"] is not None


def test_a_bug_in_a_run_is_counted_as_internal_and_the_next_run_recovers(
    sim: Simulator, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    """A bug cannot be produced through N-central, so this one is planted in the client."""
    calls: list[int] = []

    class BuggyClient(NCentralClient):
        def poll(self, report_id: int, deadline: float) -> PollResult:
            calls.append(report_id)
            if len(calls) == 1:
                raise KeyError("planted bug")
            return super().poll(report_id, deadline)

    app = make_app(runner_config(sim),
                   client_factory=lambda settings, halt: BuggyClient(settings, sleep=interruptible_sleep(halt)))
    assert not app.run("all")
    samples = scrape(app)
    assert sample(samples, "ncentral_patch_report_failures_total", report="all", reason="internal") == 1
    assert any(r.getMessage() == "unexpected error in a report run" and r.exc_info for r in caplog.records)
    assert app.run("all")
    assert len(calls) >= 2


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("huge-count", {"deviceClassSummaries": [{"deviceClass": "A", "approvalStatusCounts": {"declined": 10**400}}]}),
        ("lone-surrogate", {"deviceClassSummaries": [{"deviceClass": "\ud800", "approvalStatusCounts": {}}]}),
        ("no-summaries", {"somethingElse": []}),
        ("bad-install-count", {"deviceClassSummaries": [], "patchSummaryList": [{
            "approvalStatus": "No Approval",
            "patchInstallStatusCounts": [{"patchInstallStatus": "Failed",
                                          "patchTypeSummaries": [{"patchType": "drivers", "count": "3"}]}],
        }]}),
    ],
)
def test_implausible_report_data_is_invalid_and_the_good_data_stays(
    sim: Simulator, exporter: Exporter, name: str, data: dict[str, object]
) -> None:
    assert exporter.run("all")
    good = approvals(scrape(exporter))
    sim.set_data(data)
    assert not exporter.run("all")
    samples = scrape(exporter)
    assert sample(samples, "ncentral_patch_report_failures_total", report="all", reason="invalid_response") == 1
    assert approvals(samples) == good


def test_a_forgotten_in_flight_report_is_submitted_anew(sim: Simulator, tmp_path: Path, make_app: MakeApp) -> None:
    state = tmp_path / "state.json"
    config = replace(runner_config(sim), storage_path=str(state))
    first = make_app(config)
    first.shutdown()
    stored = json.loads(state.read_text())
    stored["collections"]["all"]["result"] = {"in_flight": {"report_id": 999_999, "submitted_at": time.time() - 1}}
    state.write_text(json.dumps(stored))
    app = make_app(config)
    assert app.run("all")
    app.shutdown()
    assert [r.path for r in sim.requests if r.endpoint in ("poll", "submit")][:2] == [
        "/api/report/999999", "/api/report/patch-comparison"
    ]
    assert app.store.snapshot["all"].failures["not_supported"] == 0


def test_reload_during_a_run_restarts_it_with_the_new_filters(sim: Simulator, make_app: MakeApp) -> None:
    sim.set_generation_time(3600)
    old = runner_config(sim)
    new = with_report(old, patch_approvals=("Declined",))
    configs = iter([new])
    app = make_app(old, lambda: next(configs))
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(app.run("all")))
    worker.start()
    wait_for(lambda: sim.count("poll") >= 1)
    sim.set_generation_time(0)
    assert app.reload() is None
    worker.join(10)
    app.shutdown()
    assert outcome == [True]
    submits = [r.json() for r in sim.requests if r.endpoint == "submit"]
    assert len(submits) == 2
    assert "patchApprovals" not in submits[0]
    assert submits[1]["patchApprovals"] == ["Declined"]
    state = app.store.snapshot["all"]
    assert state.fingerprint == reports_of(new)[0].fingerprint
    assert state.runs_total == 1
    assert report_result(state).data is not None


def run_reloading_at_first_poll(app: Exporter, sim: Simulator) -> bool:
    """Run report "all" in a thread, reload once its first poll has been sent, and return the run's outcome."""
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(app.run("all")))
    try:
        worker.start()
        wait_for(lambda: sim.count("poll") >= 1)
        assert app.reload() is None
        worker.join(10)
    finally:
        app.shutdown()
    assert len(outcome) == 1, "the run did not end"
    return outcome[0]


def test_a_report_removed_during_its_run_just_stops(sim: Simulator, make_app: MakeApp) -> None:
    sim.set_generation_time(3600)
    old = runner_config(sim)
    other = with_report(old, name="other")
    app = make_app(old, lambda: other)
    assert run_reloading_at_first_poll(app, sim) is False
    assert set(app.store.snapshot) == {"other"}


def test_a_result_the_store_refuses_after_a_reload_is_dropped_and_the_run_starts_afresh(
    sim: Simulator, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    """The store refuses the outcome of a run whose filters a reload changed while its last call was out:
    that outcome is neither counted nor stored, and the run starts again with the new filters."""
    old = runner_config(sim)
    old = replace(old, ncentral=replace(old.ncentral, request_timeout=5.0, retries=0))
    new = with_report(old, patch_approvals=("Declined",))
    app = make_app(old, lambda: new)
    # The first poll is held 1.5 s, then the connection closes without an answer: a failure to record.
    sim.add_fault("slow", endpoint="poll", count=1, delay=1.5)
    with caplog.at_level(logging.INFO):
        assert run_reloading_at_first_poll(app, sim) is True
    messages = [r.getMessage() for r in caplog.records]
    assert "report settings changed during the run; starting it afresh" in messages
    assert "report run failed" not in messages  # the refused failure was not recorded
    submits = [r.json() for r in sim.requests if r.endpoint == "submit"]
    assert [submit.get("patchApprovals") for submit in submits] == [None, ["Declined"]]
    state = app.store.snapshot["all"]
    assert state.fingerprint == reports_of(new)[0].fingerprint
    assert (state.runs_total, sum(state.failures.values())) == (1, 0)
