"""The simulator answers and the client asks as N-central's OpenAPI description says (real HTTP on loopback)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from conftest import MakeApp
from helpers import config_document, free_port, make_config, metrics_body, sample, scrape, write_yaml

from exporter import landing
from exporter.app import Exporter
from exporter.client import NCentralClient, ServerInfo, parse_version, server_address
from exporter.config import Config, NCentralSettings, log_notices
from exporter.config_file import load_config
from exporter.errors import ConnectionFailed, HTTPError
from exporter.reports import ReportSettings
from exporter.simulator import API_SERVICE_VERSION, DEFAULT_VERSION, START_DATE_PATTERN, Simulator

SCHEMA_PROPERTIES = {"startDate", "installStatuses", "patchApprovals", "patchCategories"}



def run_once(make_app: MakeApp, config: Config) -> Exporter:
    app = make_app(config)
    app.run_once()
    return app


def access_token(sim: Simulator) -> str:
    answer = requests.post(f"{sim.url}/api/auth/authenticate", headers={"Authorization": f"Bearer {sim.jwt}"},
                           timeout=5)
    assert answer.status_code == 200
    token: str = answer.json()["tokens"]["access"]["token"]
    return token


def test_submit_answers_200_with_the_documented_response(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {access_token(sim)}"}
    answer = requests.post(f"{sim.url}/api/report/patch-comparison", json={"startDate": "2025-08-01"},
                           headers=headers, timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"reportId", "reportStatus", "message", "data"}
    assert body["reportStatus"] in ("COMPLETED", "IN_PROGRESS", "FAILED", "ABORTED")
    poll = requests.get(f"{sim.url}/api/report/{body['reportId']}", headers=headers, timeout=5)
    assert poll.status_code == 200
    assert poll.json()["reportStatus"] == "COMPLETED"


def test_a_validation_failure_is_an_error_response_with_field_errors(sim: Simulator) -> None:
    answer = requests.post(
        f"{sim.url}/api/report/patch-comparison",
        json={"startDate": "2025-13-01", "installStatuses": ["INVALID"], "customerId": 12345},
        headers={"Authorization": f"Bearer {access_token(sim)}"}, timeout=5,
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] == 400
    assert body["message"].endswith("Multiple Validations Failed.")
    assert {error["field"]: error["message"] for error in body["errors"]} == {
        "startDate": "startDate must be in the format YYYY-MM-DD",
        "installStatuses": "Invalid Install Status Values ['INVALID']",
        "customerId": "customerId is not a property of PatchComparisonReportRequest",
    }


def test_errors_without_a_token_are_error_responses(sim: Simulator) -> None:
    for path in ("/api/server-info", "/api/server-info/extra", "/api/auth/validate"):
        answer = requests.get(f"{sim.url}{path}", timeout=5)
        assert answer.status_code == 401, path
        assert answer.json()["status"] == 401
        assert "UnauthorizedException" in answer.json()["message"]


def test_server_info_and_extra_answer_as_documented(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {access_token(sim)}"}
    info = requests.get(f"{sim.url}/api/server-info", headers=headers, timeout=5).json()
    assert info == {"version": API_SERVICE_VERSION, "jvmVersion": "17.0.9", "ncentral": None}
    extra = requests.get(f"{sim.url}/api/server-info/extra", headers=headers, timeout=5).json()
    assert extra["_links"] == {}
    assert extra["data"]["_extra"]["Installation: Deployment Product Version"] == DEFAULT_VERSION
    health = requests.get(f"{sim.url}/api/health", timeout=5).json()
    assert time.strptime(health["currentTime"], "%Y-%m-%dT%H:%M:%S.000Z")
    validate = requests.get(f"{sim.url}/api/auth/validate", headers=headers, timeout=5)
    assert validate.json() == {"message": "The token is valid."}


def test_the_client_sends_only_what_the_schema_has(sim: Simulator, make_app: MakeApp) -> None:
    config = make_config(sim.url, sim.jwt, retries=1)
    for report in (
        ReportSettings(name="all"),
        ReportSettings(name="all", start_date="2025-02-28", install_statuses=("Failed",),
                       patch_approvals=("Declined",), patch_categories=("Drivers",)),
    ):
        run_once(make_app, replace(config, collections=(replace(report, poll_interval=0.01),)))
    bodies = [r.json() for r in sim.requests if r.endpoint == "submit"]
    assert len(bodies) == 2
    for body in bodies:
        assert set(body) <= SCHEMA_PROPERTIES
        assert START_DATE_PATTERN.match(body["startDate"])
    assert set(bodies[1]) == SCHEMA_PROPERTIES


def test_field_messages_of_a_400_are_logged_and_kept(
    sim: Simulator, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    sim.add_fault("invalid_fields", endpoint="submit")
    with caplog.at_level(logging.WARNING, logger="exporter.reports"):
        app = run_once(make_app, make_config(sim.url, sim.jwt, retries=1))
    state = app.store.snapshot["all"]
    assert state.last_reason == "http"
    assert state.last_error is not None
    assert "startDate: startDate must be in the format YYYY-MM-DD" in state.last_error
    assert "installStatuses: Invalid Install Status Values ['INVALID']" in state.last_error
    assert "Multiple Validations Failed." in state.last_error
    logged = [record for record in caplog.records if record.getMessage() == "report run failed"]
    assert len(logged) == 1
    assert "startDate: startDate must be in the format YYYY-MM-DD" in logged[0].error  # type: ignore[attr-defined]
    page = landing.render(app.config, app.store.snapshot, {}, "/metrics", time.time()).decode()
    assert "startDate: startDate must be in the format YYYY-MM-DD" in page


def test_ncentral_server_info_carries_the_version(sim: Simulator, make_app: MakeApp) -> None:
    app = run_once(make_app, make_config(sim.url, sim.jwt, retries=1))
    samples = scrape(app)
    assert sample(samples, "ncentral_server_info", version=DEFAULT_VERSION, api_version=API_SERVICE_VERSION) == 1
    assert app.store.snapshot["all"].last_run_success


def test_no_server_info_before_the_first_authentication(sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(make_config(sim.url, sim.jwt, retries=1))
    text = metrics_body(app.exposition).decode()
    assert "ncentral_server_info{" not in text
    assert "# TYPE ncentral_server_info gauge" in text


def test_a_2024_server_is_named_and_not_supported(make_app: MakeApp) -> None:
    with Simulator(jwt="old-server-jwt-0123456789", version="2024.1.0.5") as sim:
        app = run_once(make_app, make_config(sim.url, sim.jwt, retries=1))
        assert sim.count("submit") == 0  # known to be too old: nothing asked of an API it lacks
        samples = scrape(app)
    state = app.store.snapshot["all"]
    assert state.last_reason == "not_supported"
    assert state.last_error is not None
    assert "N-central 2024.1.0.5" in state.last_error
    assert "2025.4 or later" in state.last_error
    assert sample(samples, "ncentral_server_info", version="2024.1.0.5", api_version=API_SERVICE_VERSION) == 1
    assert sample(samples, "ncentral_patch_report_failures_total", report="all", reason="not_supported") == 1


def test_an_unreadable_version_does_not_stop_the_reports(
    sim: Simulator, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    sim.add_fault("403", endpoint="server_info_extra")
    with caplog.at_level(logging.WARNING, logger="exporter.client"):
        app = run_once(make_app, make_config(sim.url, sim.jwt, retries=1))
    assert app.store.snapshot["all"].last_run_success
    assert any(r.getMessage() == "cannot read the N-central version" for r in caplog.records)
    samples = scrape(app)
    assert sample(samples, "ncentral_server_info", version="unknown", api_version=API_SERVICE_VERSION) == 1


def test_a_404_on_authenticate_is_a_url_problem(sim: Simulator, make_app: MakeApp) -> None:
    app = run_once(make_app, make_config(f"{sim.url}/ncentral", sim.jwt, retries=1))
    state = app.store.snapshot["all"]
    assert state.last_reason == "http"
    assert state.last_error is not None
    assert "no N-central API at" in state.last_error
    assert "ncentral.url" in state.last_error
    assert "2025.4" not in state.last_error


@pytest.mark.parametrize("suffix", ["/api", "/api/", "/"])
def test_a_base_url_as_people_write_it_works(
    sim: Simulator, make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str
) -> None:
    document = config_document(sim)
    document["ncentral"]["url"] = sim.url + suffix
    path = write_yaml(tmp_path / "config.yaml", document)
    with caplog.at_level(logging.INFO, logger="exporter.config"):
        config = load_config(str(path), env={})
        log_notices(config)  # as start-up does, once the config is accepted
        again = load_config(str(path), env={})
        assert again == config
        log_notices(again)  # a reload says nothing new
    assert config.ncentral.url == sim.url
    noted = [r for r in caplog.records if r.getMessage().startswith("ncentral.url normalised")]
    assert len(noted) == 1
    assert (noted[0].given, noted[0].url) == (sim.url + suffix, sim.url)  # type: ignore[attr-defined]
    app = run_once(make_app, config)
    assert app.store.snapshot["all"].last_run_success
    assert all(not r.path.startswith("/api/api") for r in sim.requests)


def test_connection_errors_name_host_and_port(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    client = NCentralClient(NCentralSettings(url=f"http://127.0.0.1:{port}", token="jwt-0123456789", retries=2,
                                             retry_backoff=0.01))
    with caplog.at_level(logging.DEBUG, logger="exporter.client"), pytest.raises(ConnectionFailed) as error:
        client.submit({"startDate": "2025-08-01"}, time.monotonic() + 10)
    assert f"127.0.0.1:{port}" in error.value.message
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 2
    for line in retries:
        assert line.count("/api/auth/authenticate") == 1, line
        assert f"127.0.0.1:{port}" in line


def test_server_address_spells_out_the_port() -> None:
    assert server_address("https://nc.example.com") == "nc.example.com:443"
    assert server_address("http://nc.example.com") == "nc.example.com:80"
    assert server_address("https://[::1]:8443/x") == "[::1]:8443"


@pytest.mark.parametrize(("version", "supported"), [
    ("2025.4.0.12", True), ("2025.5", True), ("2026.1.0.1", True), ("2025.3.1.9", False), ("2024.1.0.5", False),
    ("unknown", None), (None, None),
])
def test_server_versions(version: str | None, supported: bool | None) -> None:
    assert ServerInfo(version, None).supported is supported


def test_parse_version() -> None:
    assert parse_version("2025.4.0.12") == (2025, 4, 0, 12)
    assert parse_version("2025") is None
    assert parse_version("v2025.4") is None


def test_the_http_error_of_a_submit_has_the_field_messages(sim: Simulator) -> None:
    client = NCentralClient(NCentralSettings(url=sim.url, token=sim.jwt, retry_backoff=0.01))
    with pytest.raises(HTTPError) as error:
        client.submit({"startDate": "2025-8-1"}, time.monotonic() + 10)
    assert error.value.status == 400
    assert "startDate: startDate must be in the format YYYY-MM-DD" in error.value.message
