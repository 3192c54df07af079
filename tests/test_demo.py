"""The demo behaves like N-central: report filters narrow the simulated counts, a reload in `--demo`
succeeds, the server's release is logged once, refused customers are shown and logged once per change;
and the first steps a new user takes (`--check-config` without a file, the simulator's `--help`,
`.ci/run` as a non-root user) say what to do."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import MakeApp
from helpers import (
    REPO,
    ExporterProcess,
    config_document,
    run_command,
    sample,
    scrape,
    select,
    wait_for,
    write_yaml,
)

from exporter import landing
from exporter.customers import CUSTOMERS, CustomerData
from exporter.simulator import DEFAULT_DATA, FORBIDDEN_CUSTOMER, Simulator
from exporter.simulator.filters import CATEGORY_SHARES, window_share

SERVER_LINE = 'msg="N-central server"'


def _approvals(samples: Any, report: str) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["device_class"], dict(labels)["approval_status"]): value
        for labels, value in select(samples, "ncentral_patch_approvals", report=report).items()
    }


def test_report_filters_narrow_the_simulated_counts(sim: Simulator, make_app: MakeApp) -> None:
    """The README's second example report (security updates waiting for approval, 30 days) answers its
    own question, not the unfiltered report's."""
    document = config_document(sim)
    backlog = {**document["reports"][0], "name": "security-backlog", "start_date": "30d",
               "patch_approvals": ["No Approval"], "patch_categories": ["Security Updates", "Critical Updates"]}
    document["reports"].append(backlog)
    app = make_app(document)
    assert app.run("all") and app.run("security-backlog")
    samples = scrape(app)
    everything, backlog_counts = _approvals(samples, "all"), _approvals(samples, "security-backlog")
    laptops = DEFAULT_DATA["deviceClassSummaries"][0]["approvalStatusCounts"]
    assert everything[("Laptops - Windows", "approved_for_install")] == laptops["approvedForInstall"] == 6424
    assert everything[("Laptops - Windows", "no_approval")] == laptops["noApproval"]

    submit = [r.json() for r in sim.requests if r.endpoint == "submit"][1]
    share = (CATEGORY_SHARES["Security Updates"] + CATEGORY_SHARES["Critical Updates"]) * window_share(
        submit["startDate"], dt.datetime.now(dt.UTC).date())
    assert backlog_counts[("Laptops - Windows", "approved_for_install")] == 0
    assert backlog_counts[("Laptops - Windows", "declined")] == 0
    assert backlog_counts[("Laptops - Windows", "no_approval")] == int(laptops["noApproval"] * share + 0.5)
    assert 0 < backlog_counts[("Laptops - Windows", "no_approval")] < laptops["noApproval"]
    installs = select(samples, "ncentral_patch_installs", report="security-backlog")
    assert installs and {dict(labels)["approval_status"] for labels in installs} == {"no_approval"}
    assert {dict(labels)["patch_type"] for labels in installs} == {"security_updates", "critical_updates"}


def test_install_status_filter_and_an_old_start_date(sim: Simulator, make_app: MakeApp) -> None:
    document = config_document(sim, start_date="2020-01-01", install_statuses=["Failed"])
    app = make_app(document)
    assert app.run("all")
    samples = scrape(app)
    counts = _approvals(samples, "all")
    # 2 % of the patches approved for install failed; the patches of other statuses are not installed.
    assert counts[("Laptops - Windows", "approved_for_install")] == int(6424 * 0.02 + 0.5)
    assert counts[("Laptops - Windows", "no_approval")] == 0
    installs = select(samples, "ncentral_patch_installs", report="all")
    assert {dict(labels)["install_status"] for labels in installs} == {"failed"}
    assert sample(samples, "ncentral_patch_installs", report="all", approval_status="approved_for_install",
                  install_status="failed", patch_type="security_updates") == 23  # the window covers them all


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp_path = tmp_path_factory.mktemp("demo")
    exporter = ExporterProcess(tmp_path, "--demo")
    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200, 30)
        wait_for(lambda: sample(exporter.scrape(), "ncentral_patch_report_runs_total", report=CUSTOMERS), 30)
        yield exporter
    finally:
        exporter.stop()


def _reload_successful(exporter: ExporterProcess) -> float | None:
    return sample(exporter.scrape(), "ncentral_patch_exporter_config_last_reload_successful")


def test_demo_reloads_its_built_in_configuration(demo: ExporterProcess) -> None:
    answer = requests.post(f"{demo.url}/-/reload", timeout=10)
    assert answer.status_code == 200, answer.text
    assert _reload_successful(demo) == 1
    demo.signal(signal.SIGHUP)
    wait_for(lambda: demo.log().count('msg="configuration reloaded"') == 2)
    assert _reload_successful(demo) == 1
    assert "configuration reload refused" not in demo.log()
    assert demo.get("/-/ready").status_code == 200


def test_demo_logs_the_server_release_once(demo: ExporterProcess) -> None:
    """The reports' client and the customer scan's both authenticate: one line, not one each."""
    assert demo.log().count(SERVER_LINE) == 1


def test_check_connection_prints_its_steps_without_the_log_line(sim: Simulator, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    result = run_command("--config.file", str(config), "--check-connection")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    server version: N-central" in result.stdout
    assert "N-central server" not in result.stdout + result.stderr


def test_demo_landing_page_names_the_refused_customer(demo: ExporterProcess) -> None:
    page = demo.get("/").text
    section = page[page.index('<section class="customers"'):]
    refused = section[section.index("refused in the last scan"):]
    assert re.search(rf"<td>{FORBIDDEN_CUSTOMER}</td><td class=\"n\">\d+</td>"
                     r"<td><span class=\"bad\">forbidden</span> \(HTTP 403\): the API user may not read", refused)


def test_a_refused_customer_is_logged_once_per_change(
    sim: Simulator, caplog: pytest.LogCaptureFixture, make_app: MakeApp,
) -> None:
    document = {**config_document(sim), CUSTOMERS: {}}
    app = make_app(document)
    with caplog.at_level(logging.INFO, logger="exporter.customers"):
        assert app.run(CUSTOMERS) and app.run(CUSTOMERS)
        refused = [r for r in caplog.records if r.getMessage().startswith("customer's active issues refused")]
        assert [r.__dict__["customer"] for r in refused] == [FORBIDDEN_CUSTOMER]
        # The customer becomes readable: said once; refused again: warned again.
        estate = sim.estate
        sim.set_estate(replace(estate, customers=tuple(replace(c, refused=None) for c in estate.customers)))
        assert app.run(CUSTOMERS) and app.run(CUSTOMERS)
        sim.set_estate(estate)
        assert app.run(CUSTOMERS)
    messages = [r.getMessage() for r in caplog.records if "active issues" in r.getMessage()]
    assert messages == [
        "customer's active issues refused; keeping its last counts",
        "customer's active issues readable again",
        "customer's active issues refused; keeping its last counts",
    ]
    data = app.store.snapshot[CUSTOMERS].result
    page = landing.render(app.config, app.store.snapshot, {}, "/metrics", 0.0).decode()
    assert isinstance(data, CustomerData) and [c.customer for c in data.refused] == [FORBIDDEN_CUSTOMER]
    assert "its last good counts" in page  # scanned while readable: its counts stay


def test_check_config_without_a_config_file_names_the_flags(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "exporter", "--check-config"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "config.yaml: config file not found" in result.stderr
    assert "--config.file" in result.stderr and "--demo" in result.stderr


def test_simulator_help_explains_every_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "exporter.simulator", "--help"], capture_output=True,
                            text=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0
    options = re.split(r"\n  (?=-)", result.stdout.split("options:", 1)[1])[1:]
    flags = {option.split()[0].rstrip(","): " ".join(option.split()) for option in options}
    assert set(flags) == {"-h", "--port", "--jwt", "--generation-time", "--server-version"}
    for flag, text in flags.items():
        if flag != "-h":
            assert "(default: " in text, text
    assert "--generation-time SECONDS" in flags["--generation-time"]
    assert "seconds" in flags["--generation-time"].split("SECONDS", 1)[1]


def test_ci_installs_debian_packages_with_sudo_when_not_root(tmp_path: Path) -> None:
    """`.ci/run` on a machine without the tools, as a non-root user: apt-get goes through sudo. What it would
    install and run (id, sudo, apt-get, python3, the venv's pip and python) are stand-ins that record how
    they were called."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir, venv_bin, calls = tmp_path / "bin", tmp_path / ".venv" / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    venv_bin.mkdir(parents=True)
    for tool in ("dirname", "basename"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    record = f'#!/bin/sh\necho "$(basename "$0") $*" >> {calls}\n'
    stubs = {bin_dir / "id": "#!/bin/sh\necho 1000\n", bin_dir / "sudo": record, bin_dir / "apt-get": record,
             bin_dir / "python3": record, venv_bin / "pip": record, venv_bin / "python": record}
    for path, body in stubs.items():
        path.write_text(body)
        path.chmod(0o755)
    result = subprocess.run(["/bin/bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True,
                            env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = calls.read_text().splitlines()
    assert not [line for line in lines if line.startswith("apt-get")], lines  # never without sudo
    install = [line for line in lines if line.startswith("sudo ") and "apt-get install" in line]
    assert install and "prometheus" in install[0].split(), lines
    assert "with sudo" in result.stdout + result.stderr
