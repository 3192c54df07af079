"""The Prometheus alert rules and example config: promtool checks and unit tests, conventions, and an
end-to-end run in which a failing report's alert travels exporter → Prometheus → Alertmanager → webhook.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from helpers import (
    PROMETHEUS_DIR,
    REPO,
    AlertmanagerServer,
    ChildProcess,
    PrometheusServer,
    ReadyExporter,
    free_port,
    parse_samples,
    prometheus_test_config,
    wait_for,
    write_yaml,
)

from exporter.simulator import Simulator

pytestmark = pytest.mark.long

ALERTS = PROMETHEUS_DIR / "alerts.yml"
# The alerts that wait minutes are tested at 1m steps, those that wait hours at 5m steps.
ALERTS_TESTS = (PROMETHEUS_DIR / "alerts.test.yml", PROMETHEUS_DIR / "alerts.hours.test.yml")
EXAMPLE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
JOB = "ncentral-patch-exporter"
EXPECTED_ALERTS = {
    "NCentralPatchExporterDown",
    "NCentralPatchReportFailing",
    "NCentralPatchDataStale",
    "NCentralPatchInstallFailuresPresent",
    "NCentralPatchInstallFailuresRising",
    "NCentralPatchNoApprovalBacklog",
    "NCentralPatchCustomerBehind",
    "NCentralCustomerAgentsStale",
    "NCentralEndOfLifeDevices",
    "NCentralCustomerPatchCompliance",
    "NCentralCustomerPatchSLABreached",
}
FAST_FOR = "1s"


def rules() -> list[dict[str, Any]]:
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    assert group["name"] == "ncentral-patch-exporter"
    return list(group["rules"])


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)


# --- promtool ----------------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", *map(str, ALERTS_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(ALERTS_TESTS)


def test_promtool_check_example_config() -> None:
    """The example prometheus.yml is valid and loads the rule file next to it."""
    result = promtool("check", "config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


# --- conventions ---------------------------------------------------------------------------------------


def test_alert_names_labels_and_annotations() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} == EXPECTED_ALERTS
    severities = set()
    for rule in found:
        name = rule["alert"]
        # monitoring-mixins style: CamelCase with the one prefix NCentral (the product).
        assert re.fullmatch(r"NCentral(?:[A-Z][a-z]+|[A-Z]+(?=[A-Z]|$))+", name), name
        assert set(rule["labels"]) == {"severity"}, name
        severities.add(rule["labels"]["severity"])
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert "$labels." in rule["annotations"]["summary"], name
        assert "$value" in rule["annotations"]["description"], f"{name}: the description shows the value"
        assert "for" in rule, name
    assert severities == {"critical", "warning", "info"}
    by_name = {rule["alert"]: rule for rule in found}
    assert by_name["NCentralPatchExporterDown"]["expr"] == f'up{{job="{JOB}"}} == 0'
    assert by_name["NCentralPatchNoApprovalBacklog"]["labels"]["severity"] == "warning"
    assert 'approval_status="no_approval"' in by_name["NCentralPatchNoApprovalBacklog"]["expr"]
    # Stale is relative to each collection's own interval, which the exporter exports.
    assert "> 2 * ncentral_patch_report_interval_seconds{" in by_name["NCentralPatchDataStale"]["expr"]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in ALERTS_TESTS:
        suite = yaml.safe_load(path.read_text())
        assert suite["rule_files"] == [ALERTS.name]
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


def test_example_config() -> None:
    text = EXAMPLE_CONFIG.read_text()
    config = yaml.safe_load(text)
    assert config["rule_files"] == [ALERTS.name]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs[JOB]["static_configs"][0]["targets"] == ["ncentral-patch-exporter:10120"]
    assert "report interval" in text  # the comment on scrape interval versus report interval


# --- end to end: exporter → Prometheus → Alertmanager → webhook ------------------------------------------


def fast_rules(tmp_path: Path) -> Path:
    """A test-only copy of the shipped rules with every `for:` shortened; nothing else changes."""
    config = yaml.safe_load(ALERTS.read_text())
    for group in config["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FAST_FOR
    path = tmp_path / "alerts.fast.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_fast_rules_differ_only_in_for(tmp_path: Path) -> None:
    shipped = yaml.safe_load(ALERTS.read_text())
    fast = yaml.safe_load(fast_rules(tmp_path).read_text())
    for group in shipped["groups"]:
        for rule in group["rules"]:
            rule["for"] = FAST_FOR
    assert fast == shipped
    result = promtool("check", "rules", str(tmp_path / "alerts.fast.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


class Webhook:
    """A tiny Alertmanager webhook receiver on a free loopback port; `alerts` lists every alert received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: list[dict[str, Any]] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                payload = json.loads(body)
                with webhook._lock:
                    webhook._alerts.extend(payload["alerts"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self, name: str, status: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                alert for alert in self._alerts
                if alert["labels"]["alertname"] == name and status in (None, alert["status"])
            ]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[str]:
    """A real Alertmanager on loopback that sends every notification, at once, to the webhook."""
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "report"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
    }
    with AlertmanagerServer(tmp_path, config) as server:
        yield server.address


def test_prometheus_config_for_the_test_is_the_shipped_one(tmp_path: Path) -> None:
    """The e2e tests run the shipped prometheus.yml with only addresses, intervals and rule paths changed."""
    config = prometheus_test_config("127.0.0.1:1", "127.0.0.1:2", [tmp_path / "r.yml"], "127.0.0.1:3")
    shipped = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == [
        job["job_name"] for job in shipped["scrape_configs"]
    ]
    assert config["scrape_configs"][0]["metrics_path"] == shipped["scrape_configs"][0]["metrics_path"]
    config_path = tmp_path / "prometheus.yml"
    (tmp_path / "r.yml").write_text(ALERTS.read_text())
    config_path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_report_failing_alert_reaches_alertmanager_webhook(
    tmp_path: Path, sim: Simulator, alertmanager: str, webhook: Webhook,
) -> None:
    simulator = sim  # conftest's simulator: an N-central stand-in on loopback
    config = write_yaml(tmp_path / "config.yml", {
        "ncentral": {"url": simulator.url, "api_token": simulator.jwt, "request_timeout": "5s",
                     "retry_backoff": "10ms"},
        "reports": [{"name": "all", "interval": "1s", "poll_interval": "50ms", "poll_max_interval": "200ms",
                     "timeout": "10s"}],
    })
    # The exporter is ready (its first run succeeded) before Prometheus starts: a scrape before that would
    # see last_run_success 0, and with the shortened `for:` the report-failing alert would fire early.
    with (
        ReadyExporter(tmp_path, f"--config.file={config}") as exporter_process,
        PrometheusServer(tmp_path, exporter_process.address, [fast_rules(tmp_path)], alertmanager) as prom,
    ):
        exporter = exporter_process.address
        # The demo data has a "no approval" backlog of 150 for one device class: that alert proves the
        # whole path works before the report fails, while the report-failing alert stays silent.
        backlog = wait_for(lambda: webhook.alerts("NCentralPatchNoApprovalBacklog", "firing"), timeout=20)
        assert backlog[0]["labels"]["device_class"] == "Laptops - Windows"
        assert backlog[0]["labels"]["severity"] == "warning"
        assert not prom.query('ALERTS{alertname="NCentralPatchReportFailing"}')
        assert not webhook.alerts("NCentralPatchReportFailing")

        simulator.set_outcome("FAILED")
        (alert, *_) = wait_for(lambda: webhook.alerts("NCentralPatchReportFailing", "firing"), timeout=20)
        assert alert["labels"]["report"] == "all"
        assert alert["labels"]["job"] == JOB
        assert alert["labels"]["instance"] == exporter
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] == f"N-central patch report all is failing on {exporter}"
        # The description's query templates ran in the real Prometheus: the last run's reason, and the counts.
        assert re.fullmatch(
            rf"Runs of report all on {re.escape(exporter)} have been failing for more than 30 minutes "
            r"\(last_run_success = 0\)\. The last run failed with reason report_failed\. Failed runs counted by "
            r"the exporter, by reason: report_failed: [1-9]\d*\. The exporter log has the error\.",
            alert["annotations"]["description"],
        ), alert["annotations"]

        simulator.set_outcome("COMPLETED")
        wait_for(lambda: webhook.alerts("NCentralPatchReportFailing", "resolved"), timeout=20)


def test_report_failing_since_start_up_names_reason_and_count(
    tmp_path: Path, sim: Simulator, alertmanager: str, webhook: Webhook,
) -> None:
    """A report that failed before Prometheus's first scrape and has not run since: its failure counter
    never rises in Prometheus's view, and the alert still says why and how often it failed."""
    sim.set_outcome("FAILED")
    config = write_yaml(tmp_path / "config.yml", {
        "ncentral": {"url": sim.url, "api_token": sim.jwt, "request_timeout": "5s", "retry_backoff": "10ms"},
        "reports": [{"name": "all", "interval": "1h", "poll_interval": "50ms", "poll_max_interval": "200ms",
                     "timeout": "10s"}],
    })
    address = f"127.0.0.1:{free_port()}"
    exporter = ChildProcess(
        [sys.executable, "-m", "exporter", f"--web.listen-address={address}", f"--config.file={config}"],
        tmp_path / "exporter.log", f"http://{address}/-/healthy", cwd=REPO,
    )
    with exporter:
        failed = ("ncentral_patch_report_failures_total", frozenset({("report", "all"), ("reason", "report_failed")}))
        wait_for(lambda: parse_samples(requests.get(f"http://{address}/metrics", timeout=5).text).get(failed))
        with PrometheusServer(tmp_path, address, [fast_rules(tmp_path)], alertmanager):
            (alert, *_) = wait_for(lambda: webhook.alerts("NCentralPatchReportFailing", "firing"), timeout=20)
    assert alert["annotations"]["description"] == (
        f"Runs of report all on {address} have been failing for more than 30 minutes (last_run_success = 0). "
        "The last run failed with reason report_failed. Failed runs counted by the exporter, by reason: "
        "report_failed: 1. The exporter log has the error."
    )
