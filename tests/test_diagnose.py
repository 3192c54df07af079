"""`--check-connection`: each step passing and failing against the simulator, one line each."""

from __future__ import annotations

import io
from pathlib import Path

from helpers import config_document, free_port, run_command, write_yaml

from exporter.config import NCentralSettings
from exporter.diagnose import check_connection
from exporter.simulator import DEFAULT_VERSION, Simulator


def diagnose(url: str, token: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = check_connection(NCentralSettings(url=url, token=token, request_timeout=2.0, retry_backoff=0.01), out)
    return code, out.getvalue().splitlines()


def test_all_steps_hold(sim: Simulator) -> None:
    code, lines = diagnose(sim.url, sim.jwt)
    assert code == 0
    assert [line.split()[0] for line in lines] == ["ok"] * 4
    assert lines[0].startswith(f"ok    URL answers: GET {sim.url}/api/health answered")
    assert lines[1].startswith("ok    JWT authenticates")
    assert lines[2] == f"ok    server version: N-central {DEFAULT_VERSION} (API service 3.1.0), 2025.4 or later"
    assert lines[3] == "ok    access token validates: GET /api/auth/validate: The token is valid."
    assert [r.endpoint for r in sim.requests] == [
        "health", "authenticate", "server_info_extra", "server_info", "validate",
    ]  # in that order, and never a report


def test_nothing_listening_fails_the_first_step_naming_host_and_port() -> None:
    port = free_port()
    code, lines = diagnose(f"http://127.0.0.1:{port}", "jwt-0123456789")
    assert code == 1
    assert lines[0].startswith("FAIL  URL answers: ")
    assert f"127.0.0.1:{port}" in lines[0]
    assert "to fix: check ncentral.url (host and port)" in lines[0]
    assert lines[1:] == [
        "skip  JWT authenticates: needs the steps above",
        "skip  server version: needs the steps above",
        "skip  access token validates: needs the steps above",
    ]


def test_a_url_that_is_not_n_central_fails_the_first_step(sim: Simulator) -> None:
    code, lines = diagnose(f"{sim.url}/ncentral", sim.jwt)
    assert code == 1
    assert lines[0].startswith("FAIL  URL answers: ")
    assert "HTTP 404" in lines[0]
    assert "must be the N-central server's base URL" in lines[0]
    assert sim.count("authenticate") == 0


def test_a_rejected_jwt_says_how_to_generate_one(sim: Simulator) -> None:
    code, lines = diagnose(sim.url, "wrong-jwt-0123456789")
    assert code == 1
    assert lines[0].startswith("ok    URL answers")
    assert lines[1].startswith("FAIL  JWT authenticates: N-central rejected the API user's JWT (HTTP 401)")
    assert "Generate JSON Web Token" in lines[1]
    assert "multi-factor authentication turned off" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["skip", "skip"]
    assert "wrong-jwt-0123456789" not in "\n".join(lines)


def test_a_2024_server_fails_the_version_step() -> None:
    with Simulator(jwt="old-jwt-0123456789", version="2024.1.0.5") as sim:
        code, lines = diagnose(sim.url, sim.jwt)
    assert code == 1
    assert [line.split()[0] for line in lines] == ["ok", "ok", "FAIL", "skip"]
    assert lines[2] == ("FAIL  server version: N-central 2024.1.0.5 (API service 3.1.0) has no patch reports API; "
                        "to fix: upgrade N-central to 2025.4 or later")


def test_an_unreadable_version_fails_the_version_step(sim: Simulator) -> None:
    sim.add_fault("403", endpoint="server_info_extra")
    code, lines = diagnose(sim.url, sim.jwt)
    assert code == 1
    assert lines[2].startswith("FAIL  server version: cannot read the N-central version")


def test_an_access_token_that_does_not_validate_fails_the_last_step(sim: Simulator) -> None:
    sim.add_fault("401", endpoint="validate", count=2)  # also after the one fresh authentication
    code, lines = diagnose(sim.url, sim.jwt)
    assert code == 1
    assert [line.split()[0] for line in lines] == ["ok", "ok", "ok", "FAIL"]
    assert lines[3].startswith("FAIL  access token validates: ")
    assert "to fix: N-central does not accept the tokens it issued" in lines[3]


def test_the_command_exits_0_or_1_and_never_starts_a_report(sim: Simulator, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    good = run_command("--config.file", str(config), "--check-connection")
    assert good.returncode == 0, good.stdout + good.stderr
    assert len(good.stdout.splitlines()) == 4
    sim.jwt = "rotated-jwt-0123456789"
    bad = run_command("--config.file", str(config), "--check-connection")
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[1].startswith("FAIL  JWT authenticates")
    assert sim.count("submit") == 0
    assert "Traceback" not in good.stderr + bad.stderr


def test_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    result = run_command("--config.file", str(tmp_path / "absent.yaml"), "--check-connection")
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_text_echoing_the_access_token_is_printed_scrubbed(sim: Simulator) -> None:
    """A server whose server-info version and validate message quote the access token it was sent."""
    sim.add_fault("echo_token", endpoint="server_info", count=None)
    sim.add_fault("echo_token", endpoint="validate", count=None)
    code, lines = diagnose(sim.url, sim.jwt)
    assert code == 0
    assert lines[2] == f"ok    server version: N-central {DEFAULT_VERSION} (API service <redacted>), 2025.4 or later"
    assert lines[3] == "ok    access token validates: GET /api/auth/validate: The token <redacted> is valid."
    assert sim.issued_tokens and not any(token in line for token in sim.issued_tokens for line in lines)
