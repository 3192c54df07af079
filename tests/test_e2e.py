"""The real command as a subprocess, against the simulator over loopback HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from helpers import (
    REPO,
    ExporterProcess,
    Samples,
    config_document,
    parse_samples,
    run_command,
    sample,
    select,
    wait_for,
    write_yaml,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.errors import REASONS
from exporter.simulator import DEFAULT_DATA, Simulator

pytestmark = pytest.mark.long

VENDOR_COUNTS = {
    (summary["deviceClass"], status): count
    for summary in DEFAULT_DATA["deviceClassSummaries"]
    for status, count in summary["approvalStatusCounts"].items()
}


def scrape_when(exporter: ExporterProcess, name: str, **labels: str) -> Samples | None:
    """A scrape in which `name` has a non-zero sample with `labels`, else None."""
    samples = exporter.scrape()
    return samples if any(select(samples, name, **labels).values()) else None


def current_runs(exporter: ExporterProcess) -> float:
    return sample(exporter.scrape(), "ncentral_patch_report_runs_total", report="all") or 0


def more_runs(exporter: ExporterProcess, at_least: float) -> Callable[[], bool]:
    return lambda: current_runs(exporter) >= at_least


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def test_demo_serves_the_vendor_numbers_and_promtool_accepts_the_scrape(tmp_path: Path) -> None:
    exporter = ExporterProcess(tmp_path, "--demo")
    try:
        exporter.wait_healthy()
        samples = wait_for(lambda: scrape_when(exporter, "ncentral_patch_approvals"))
        for (device_class, status), count in VENDOR_COUNTS.items():
            value = sample(samples, "ncentral_patch_approvals", report="all", device_class=device_class,
                           approval_status=_snake(status))
            assert value == count, (device_class, status)
        assert sample(samples, "ncentral_patch_exporter_build_info", version="0.1.0") == 1
        text = exporter.get("/metrics").text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == "" and check.stderr.strip() == ""
    finally:
        assert exporter.stop() == 0


def test_once_prints_parseable_metrics_and_exit_code(sim: Simulator, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    result = run_command("--config.file", str(config), "--once")
    assert result.returncode == 0, result.stderr
    families = {family.name: family for family in text_string_to_metric_families(result.stdout)}
    assert {"ncentral_patch_approvals", "ncentral_patch_report_runs", "ncentral_patch_report_failures"} <= set(families)
    samples = parse_samples(result.stdout)
    assert sample(samples, "ncentral_patch_approvals", report="all", device_class="Laptops - Windows",
                  approval_status="declined") == 2004
    assert not any(name.startswith("process_") for name, _ in samples)

    sim.set_outcome("FAILED")
    failed = run_command("--config.file", str(config), "--once")
    assert failed.returncode == 1
    assert sample(parse_samples(failed.stdout), "ncentral_patch_report_failures_total", report="all",
                  reason="report_failed") == 1


def test_starts_and_serves_while_n_central_is_unreachable(tmp_path: Path) -> None:
    with Simulator(jwt="unreachable-jwt-0123456789") as sim:
        config = write_yaml(tmp_path / "config.yaml", config_document(sim, interval="300ms"))
    exporter = ExporterProcess(tmp_path, "--config.file", str(config))
    try:
        exporter.wait_healthy()
        samples = wait_for(
            lambda: scrape_when(exporter, "ncentral_patch_report_failures_total", report="all", reason="connection")
        )
        assert sample(samples, "ncentral_patch_report_last_run_success", report="all") == 0
        assert exporter.get("/-/ready").status_code == 503
    finally:
        assert exporter.stop() == 0


def test_sigterm_mid_poll_then_restart_resumes_the_same_report(sim: Simulator, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    config = write_yaml(tmp_path / "config.yaml", config_document(sim, interval="1s", poll_interval="50ms",
                                                              poll_max_interval="50ms", timeout="5m"))
    first = ExporterProcess(tmp_path, "--config.file", str(config), "--storage.path", str(state))
    first.wait_healthy()
    wait_for(lambda: sample(first.scrape(), "ncentral_patch_report_runs_total", report="all") == 1)
    good = select(first.scrape(), "ncentral_patch_approvals")
    sim.set_generation_time(3600)  # the next report stays IN_PROGRESS: the exporter is mid-poll
    wait_for(lambda: sim.count("submit") == 2)
    wait_for(lambda: sim.requests[-1].endpoint == "poll" and sim.count("poll") >= 4)
    polled = sim.requests[-1].path
    first.signal(signal.SIGTERM)
    started = time.monotonic()
    assert first.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    stored = json.loads(state.read_text())["collections"]["all"]
    assert stored["result"]["in_flight"]["report_id"] == int(polled.rsplit("/", 1)[1])

    submits = sim.count("submit")
    second = ExporterProcess(tmp_path, "--config.file", str(config), "--storage.path", str(state))
    try:
        second.wait_healthy()
        assert select(second.scrape(), "ncentral_patch_approvals") == good  # served at once from the state file
        assert second.get("/-/ready").status_code == 200
        polls = sim.count("poll")
        wait_for(lambda: sim.count("poll") > polls)
        assert sim.requests[-1].path == polled
        sim.finish_reports()
        wait_for(lambda: sample(second.scrape(), "ncentral_patch_report_runs_total", report="all") == 1)
        assert sim.count("submit") == submits  # resumed, not submitted anew
    finally:
        assert second.stop() == 0


FLIPS = [
    lambda s: s.add_fault("403", endpoint="submit"),
    lambda s: s.set_outcome("FAILED"),
    lambda s: s.add_fault("html", endpoint="poll"),
    lambda s: s.add_fault("404", endpoint="submit"),
    lambda s: s.set_outcome("ABORTED"),
]


def test_counters_add_up_over_many_healthy_and_faulty_runs(sim: Simulator, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", config_document(sim, interval="100ms", poll_interval="10ms",
                                                              poll_max_interval="10ms", timeout="1m"))
    exporter = ExporterProcess(tmp_path, "--config.file", str(config), "--log.format", "json")
    try:
        exporter.wait_healthy()
        for round_number in range(12):
            runs = current_runs(exporter)
            if round_number % 2:
                FLIPS[round_number // 2 % len(FLIPS)](sim)
            else:
                sim.clear_faults()
                sim.set_outcome("COMPLETED")
            wait_for(more_runs(exporter, runs + 2))
        # Park the exporter in a poll that never ends, so the final scrape and the log agree.
        sim.clear_faults()
        sim.set_outcome("IN_PROGRESS")
        submits = sim.count("submit")
        wait_for(lambda: sim.count("submit") > submits and sim.requests[-1].endpoint == "poll")
        final = exporter.scrape()
    finally:
        assert exporter.stop() == 0
    outcomes = [json.loads(line) for line in exporter.log().splitlines()
                if line.startswith("{") and json.loads(line)["msg"] in ("report run succeeded", "report run failed")]
    successes = sum(1 for o in outcomes if o["result"] == "success")
    failures = {reason: sum(1 for o in outcomes if o.get("reason") == reason) for reason in REASONS}
    runs_total = sample(final, "ncentral_patch_report_runs_total", report="all")
    assert runs_total == len(outcomes)
    assert runs_total == successes + sum(failures.values())
    for reason, count in failures.items():
        assert sample(final, "ncentral_patch_report_failures_total", report="all", reason=reason) == count
    assert successes > 0 and sum(failures.values()) > 0
    # Every run submitted exactly once (none lost, none doubled), plus the parked one.
    assert sim.count("submit") == runs_total + 1


def recovered_since(exporter: ExporterProcess, runs: float) -> bool:
    """A run failed after `runs` and a later one succeeded again."""
    samples = exporter.scrape()
    now = sample(samples, "ncentral_patch_report_runs_total", report="all") or 0
    return now >= runs + 2 and sample(samples, "ncentral_patch_report_last_run_success", report="all") == 1


SECRET_FAULTS = ["401", "403", "404", "429", "500", "503", "html", "garbage", "truncated", "error_body",
                 "wrong_types", "negative", "no_report_id", "reset"]


@pytest.mark.parametrize(("log_format", "faults"), [("text", SECRET_FAULTS[::2]), ("json", SECRET_FAULTS[1::2])])
def test_no_token_in_debug_logs_metrics_or_pages_through_every_fault(
    sim: Simulator, tmp_path: Path, log_format: str, faults: list[str]
) -> None:
    sim.access_expiry = 1  # refreshes happen too, at 0.8 s
    config = write_yaml(tmp_path / "config.yaml", config_document(sim, interval="100ms", timeout="1s"))
    exporter = ExporterProcess(tmp_path, "--config.file", str(config), "--log.level", "debug",
                               "--log.format", log_format)
    pages: list[str] = []
    try:
        exporter.wait_healthy()
        for fault in faults:
            runs = current_runs(exporter)
            sim.revoke_tokens()  # forces authenticate and refresh paths again
            sim.add_fault(fault, count=3)
            wait_for(partial(recovered_since, exporter, runs))
            pages += [exporter.get("/metrics").text, exporter.get("/").text, exporter.get("/-/ready").text]
        sim.clear_faults()
    finally:
        exporter.stop()
    output = exporter.log()
    assert "level=debug" in output or '"level": "debug"' in output
    secrets = [sim.jwt, *sim.issued_tokens]
    assert len(secrets) > 2 * len(faults)
    assert "/api/auth/authenticate" in output  # urllib3's debug lines were there to leak, and did not
    for secret in secrets:
        assert secret not in output
        assert all(secret not in page for page in pages)


@pytest.mark.parametrize(
    ("signum", "where"), [(signal.SIGTERM, "polling"), (signal.SIGINT, "polling"), (signal.SIGTERM, "in a slow call")]
)
def test_once_interrupted_by_a_signal_exits_1_quietly(
    sim: Simulator, tmp_path: Path, signum: signal.Signals, where: str
) -> None:
    sim.set_generation_time(3600)
    document = config_document(sim, timeout="5m")
    if where == "in a slow call":
        document["ncentral"]["request_timeout"] = "60s"
        sim.add_fault("slow", endpoint="submit", delay=60)
    config = write_yaml(tmp_path / "config.yaml", document)
    process = subprocess.Popen([sys.executable, "-m", "exporter", "--config.file", str(config), "--once"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    wait_for(lambda: sim.count("poll" if where == "polling" else "submit") >= 1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=5)
    assert process.returncode == 1
    assert stdout == b""
    assert b"Traceback" not in stderr
    assert b"interrupted; no metrics printed" in stderr
