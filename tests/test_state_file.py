"""The state file: writes that fail are counted and logged, with no temporary file left behind; only a
regular file within its cap is read or written, and its lock is never taken through a link; each result is
read back by its own kind only; a file of the format before kinds were tagged is read."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import portalocker
import pytest
from conftest import MakeApp
from helpers import (
    config_document,
    report_result,
    run_command,
    sample,
    scrape,
    select,
    write_yaml,
)

from exporter import store
from exporter.config import Config, NCentralSettings
from exporter.customers import CUSTOMERS, CustomerSettings
from exporter.reports import InFlight, ReportSettings
from exporter.simulator import Simulator
from exporter.store import StateFileLocked, Store


def test_a_write_that_fails_at_the_rename_leaves_no_temporary_file(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    state = tmp_path / "state.json"
    state.mkdir()  # a directory where the file belongs: the temporary file is written, its rename fails
    config = Config(ncentral=NCentralSettings(url=sim.url, token=sim.jwt, retry_backoff=0.01),
                    collections=(ReportSettings(name="all", poll_interval=0.01),))
    app = make_app(replace(config, storage_path=str(state)))
    with caplog.at_level(logging.ERROR, logger="exporter.store"):
        assert app.run_once()
    samples = scrape(app)
    failures = sample(samples, "ncentral_patch_exporter_state_write_failures_total")
    assert failures is not None and failures >= 1
    assert select(samples, "ncentral_patch_approvals")  # the results stay in memory
    errors = [r for r in caplog.records if r.getMessage() == "cannot write the state file"]
    assert errors and all(r.path == str(state) for r in errors)  # type: ignore[attr-defined]
    app.shutdown()
    assert state.is_dir() and not any(state.iterdir())
    assert not list(tmp_path.glob(".state.json.*")), "a temporary state file was left behind"


# --- the state file and its lock: regular files, bounded, never through a link ----------------------------


def config_with_state(sim: Simulator, state: Path) -> Config:
    return Config(ncentral=NCentralSettings(url=sim.url, token=sim.jwt, retry_backoff=0.01),
                  collections=(ReportSettings(name="all", poll_interval=0.01),), storage_path=str(state))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_state_path_that_is_not_a_regular_file_exits_2(sim: Simulator, tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state.fifo" if kind == "fifo" else Path(os.devnull)
    if kind == "fifo":
        os.mkfifo(state)
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    result = run_command("--config.file", str(config), f"--storage.path={state}", "--check-config", timeout=20)
    assert result.returncode == 2
    named = "a FIFO (named pipe)" if kind == "fifo" else "a character device"
    assert result.stderr.splitlines() == [
        f"ncentral-patch-exporter: error: --storage.path: {state} is {named}, not a regular file; give the path "
        "of a state file the exporter may replace"
    ]


@pytest.mark.parametrize("lock_is", ["link", "fifo", "directory"])
def test_a_lock_file_that_is_a_link_or_not_a_file_is_refused_alike(sim: Simulator, tmp_path: Path,
                                                                    lock_is: str) -> None:
    """--check-config says what start-up would, and a dangling link's target is never created."""
    state, elsewhere, lock = tmp_path / "state.json", tmp_path / "elsewhere", tmp_path / "state.json.lock"
    if lock_is == "link":
        lock.symlink_to(elsewhere)  # dangling: following it would create `elsewhere`
    elif lock_is == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    result = run_command("--config.file", str(config), f"--storage.path={state}", "--check-config", timeout=20)
    assert result.returncode == 2
    line = {
        "link": f"the lock file {lock} is a symbolic link; remove it (the exporter does not follow a link there)",
        "fifo": f"the lock file {lock} is a FIFO (named pipe), not a regular file; remove it (the exporter keeps "
                "its lock in a file there)",
        "directory": f"the lock file {lock} is a directory, not a regular file; remove it (the exporter keeps its "
                     "lock in a file there)",
    }[lock_is]
    assert result.stderr.splitlines() == [f"ncentral-patch-exporter: error: --storage.path: {line}"]
    with pytest.raises(StateFileLocked) as refused:
        Store([ReportSettings(name="all")], str(state))
    assert str(refused.value) == f"{state}: {line}"
    assert not elsewhere.exists() and not elsewhere.is_symlink()


def test_the_lock_is_the_one_portalocker_takes(tmp_path: Path) -> None:
    """Whoever holds the lock file through portalocker's cross-platform API (flock here, msvcrt on
    Windows) keeps the exporter out; released, the exporter takes it."""
    state = tmp_path / "state.json"
    with (tmp_path / "state.json.lock").open("a+b") as holder:
        portalocker.lock(holder, portalocker.LOCK_EX | portalocker.LOCK_NB)
        with pytest.raises(StateFileLocked, match="in use by another exporter"):
            Store([ReportSettings(name="all")], str(state))
        portalocker.unlock(holder)
    store = Store([ReportSettings(name="all")], str(state))
    with (tmp_path / "state.json.lock").open("a+b") as other, pytest.raises(portalocker.AlreadyLocked):
        portalocker.lock(other, portalocker.LOCK_EX | portalocker.LOCK_NB)
    store.close()


def test_a_state_file_over_its_cap_is_neither_read_nor_written(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    """What is written is what a start-up reads back: a file beyond the cap is not read, and a state beyond
    it is not written (the last one that fitted stays)."""
    state = tmp_path / "state.json"
    app = make_app(config_with_state(sim, state))
    assert app.run_once()
    app.shutdown()
    written = state.read_bytes()
    cap = len(written) // 2
    monkeypatch.setattr(store, "MAX_STATE_FILE", cap)
    with caplog.at_level(logging.WARNING, logger="exporter.store"):
        app = make_app(config_with_state(sim, state))
    assert app.store.snapshot["all"].result is None
    ignored = [r for r in caplog.records if r.getMessage() == "ignoring unreadable state file"]
    assert [r.error for r in ignored] == [f"larger than {cap} bytes"]  # type: ignore[attr-defined]
    assert app.run_once()
    assert app.store.write_failures >= 1
    assert len(state.read_bytes()) <= cap  # the last state that fitted (here: with the run in flight)
    app.shutdown()
    assert not list(tmp_path.glob(".state.json.*"))


def test_a_version_1_state_file_is_read_and_written_back_as_version_2(
    sim: Simulator, tmp_path: Path, make_app: MakeApp,
) -> None:
    state = tmp_path / "state.json"
    report, scan = ReportSettings(name="all"), CustomerSettings()
    run = {"last_success_time": 1.7e9, "last_duration": 3.5, "last_run_success": True, "last_run_time": 1.7e9,
           "last_reason": None}
    state.write_text(json.dumps({"version": 1, "reports": {  # as the exporter wrote it before kinds were tagged
        "all": {"fingerprint": report.fingerprint, **run, "customers": None,
                "data": {"approvals": [["Servers", "declined", 4]], "installs": []},
                "in_flight": {"report_id": 575523, "submitted_at": 1.7e9}},
        CUSTOMERS: {"fingerprint": scan.fingerprint, **run, "data": None, "in_flight": None,
                    "customers": {"rows": [[7, "Acme", "Servers", 3, 1, 0]], "systems": []}},
    }}))
    app = make_app(Config(ncentral=NCentralSettings(url=sim.url, token=sim.jwt), collections=(report, scan),
                          storage_path=str(state)))
    samples = scrape(app)
    assert sample(samples, "ncentral_patch_approvals", report="all", device_class="Servers",
                  approval_status="declined") == 4
    assert sample(samples, "ncentral_customer_patch_issue_devices", customer_id="7", customer="Acme",
                  device_class="Servers") == 1
    assert report_result(app.store.snapshot["all"]).in_flight == InFlight(575523, 1.7e9)
    app.store.save()
    app.shutdown()
    written = json.loads(state.read_text())
    assert written["version"] == 2 and set(written["collections"]) == {"all", CUSTOMERS}
    assert written["collections"]["all"]["kind"] == ReportSettings.kind
    assert written["collections"]["all"]["result"]["in_flight"] == {"report_id": 575523, "submitted_at": 1.7e9}
    assert written["collections"][CUSTOMERS] | {"result": None} == {
        "kind": CustomerSettings.kind, "fingerprint": scan.fingerprint, **run, "result": None}
    assert written["collections"][CUSTOMERS]["result"] == {"rows": [[7, "Acme", "Servers", 3, 1, 0]], "systems": []}


def test_a_result_is_read_back_only_by_the_kind_that_wrote_it(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    state = tmp_path / "state.json"
    scan = CustomerSettings()
    ncentral = NCentralSettings(url=sim.url, token=sim.jwt)
    state.write_text(json.dumps({"version": 2, "collections": {CUSTOMERS: {
        "kind": scan.kind, "fingerprint": scan.fingerprint, "last_run_success": True,
        "result": {"rows": [[7, "Acme", "Servers", 3, 1, 0]], "systems": []},
    }}}))
    # A report of the scan's name, now that the scan is off: the scan's result is not the report's.
    report = ReportSettings(name=CUSTOMERS)
    with caplog.at_level(logging.INFO, logger="exporter.store"):
        app = make_app(Config(ncentral=ncentral, collections=(report,), storage_path=str(state)))
    stored = app.store.snapshot[CUSTOMERS]
    assert stored.kind == ReportSettings.kind and stored.result is None and not stored.last_run_success
    assert "stored result dropped: another kind of collection wrote it" in caplog.messages
