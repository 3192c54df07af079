"""State-file writes that fail: counted, logged, and no temporary file left behind."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import metrics_body, parse_samples, sample, select

from exporter.app import Exporter
from exporter.config import Config, NCentralSettings, ReportSettings
from exporter.simulator import Simulator


def test_a_write_that_fails_at_the_rename_leaves_no_temporary_file(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.json"
    state.mkdir()  # a directory where the file belongs: the temporary file is written, its rename fails
    config = Config(ncentral=NCentralSettings(url=sim.url, token=sim.jwt, retry_backoff=0.01),
                    reports=(ReportSettings(name="all", poll_interval=0.01),))
    app = Exporter(replace(config, storage_path=str(state)))
    try:
        with caplog.at_level(logging.ERROR, logger="exporter.store"):
            assert app.run_once()
        samples = parse_samples(metrics_body(app.exposition).decode())
        failures = sample(samples, "ncentral_patch_exporter_state_write_failures_total")
        assert failures is not None and failures >= 1
        assert select(samples, "ncentral_patch_approvals")  # the results stay in memory
        errors = [r for r in caplog.records if r.getMessage() == "cannot write the state file"]
        assert errors and all(r.path == str(state) for r in errors)  # type: ignore[attr-defined]
    finally:
        app.shutdown()
    assert state.is_dir() and not any(state.iterdir())
    assert not list(tmp_path.glob(".state.json.*")), "a temporary state file was left behind"
