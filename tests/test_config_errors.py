"""Config errors as the operator meets them: one line for a refused config (nothing that parsing noted is
said before it), no secret from the URL in any error, YAML and encoding errors with their position; and the
standalone simulator's --help names the command one runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp
from helpers import REPO, config_document, free_port, run_command, write_yaml

from exporter.app import Exporter
from exporter.config import ConfigError, log_notices
from exporter.config_file import load_config, parse_config
from exporter.simulator import Simulator
from exporter.store import StateFileLock

NORMALISED = "ncentral.url normalised"
SHORT_SCAN = "customers.interval is below 15m"


def noted(sim: Simulator, **extra: Any) -> dict[str, Any]:
    """A valid config whose parsing has two things to say: a normalised URL and a short scan interval."""
    document = config_document(sim)
    document["ncentral"]["url"] = f"{sim.url}/api"
    document["customers"] = {"interval": "1m"}
    document.update(extra)
    return document


# --- 1. notices only once the config is accepted ------------------------------------------------------


def test_parsing_says_nothing_until_the_notices_are_logged(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="exporter.config"):
        config = parse_config(noted(sim), env={})
        assert not caplog.records  # parsing only collects
        log_notices(config)
        log_notices(config)  # a reload of the same URL: its normalisation is not said again
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith(NORMALISED) for m in messages) == 1
    assert sum(m.startswith(SHORT_SCAN) for m in messages) == 2
    assert config.ncentral.url == sim.url
    assert config == parse_config(noted(sim), env={})  # the notices are not part of what the config is


def test_an_accepted_config_says_what_was_normalised(sim: Simulator, tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "config.yaml", noted(sim))
    result = run_command("--config.file", str(path), "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK")
    assert NORMALISED in result.stderr
    assert SHORT_SCAN in result.stderr


def test_a_locked_state_file_refuses_start_up_with_one_line(sim: Simulator, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    path = write_yaml(tmp_path / "config.yaml", noted(sim, storage={"path": str(state)}))
    lock = StateFileLock(state)  # another exporter holds it
    try:
        result = run_command("--config.file", str(path), f"--web.listen-address=127.0.0.1:{free_port()}",
                             timeout=30)
    finally:
        lock.release()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ncentral-patch-exporter: error: ")
    assert "in use by another exporter" in lines[0]


@pytest.fixture
def reloading(sim: Simulator, make_app: MakeApp) -> tuple[Exporter, list[dict[str, Any]]]:
    documents: list[dict[str, Any]] = []
    return make_app(config_document(sim), lambda: parse_config(documents[-1], env={})), documents


def test_a_reload_says_the_notices_only_when_accepted(
    sim: Simulator, reloading: tuple[Exporter, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    app, documents = reloading
    refused = noted(sim)
    refused["reports"][0]["interval"] = "1x"
    documents.append(refused)
    with caplog.at_level(logging.INFO):
        assert app.reload() is not None
        assert not [r for r in caplog.records if r.getMessage().startswith((NORMALISED, SHORT_SCAN))]
        documents.append(noted(sim, reports=[{"name": "all", "poll_interval": "20ms", "timeout": "10s"}]))
        assert app.reload() is None
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(SHORT_SCAN) for m in messages)
    # Said after the reload was accepted, not before.
    accepted = next(i for i, m in enumerate(messages) if m == "configuration reloaded")
    assert all(i > accepted for i, m in enumerate(messages) if m.startswith((NORMALISED, SHORT_SCAN)))


# --- 3. no credentials from the URL in an error -------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://user:SECRETPW@h.example.com:99999",
    "https://user:SECRETPW@h.example.com",
    "https://SECRETPW@h.example.com/api",
    "https://user:SECRETPW@[::1",
    "user:SECRETPW@h.example.com",
    "ftp://user:SECRETPW@h.example.com",
])
def test_a_url_with_credentials_is_refused_without_repeating_them(tmp_path: Path, url: str) -> None:
    path = tmp_path / "config.yaml"
    write_yaml(path, {"ncentral": {"url": url, "api_token": "x"}})
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    message = str(caught.value)
    assert "SECRETPW" not in message
    assert "\n" not in message
    assert f"{path}: ncentral.url: must not contain a user name or password" in message


def test_the_command_refuses_credentials_in_the_url_in_one_line(sim: Simulator, tmp_path: Path) -> None:
    document = config_document(sim)
    document["ncentral"]["url"] = "https://user:SECRETPW@h.example.com:99999"
    path = write_yaml(tmp_path / "config.yaml", document)
    result = run_command("--config.file", str(path), "--check-config")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "ncentral.url: must not contain a user name or password" in line
    assert "SECRETPW" not in result.stderr + result.stdout


def test_an_at_sign_in_the_path_is_not_user_info(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write_yaml(path, {"ncentral": {"url": "https://h.example.com/n@c", "api_token": "x"}})
    assert load_config(str(path), env={}).ncentral.url == "https://h.example.com/n@c"


# --- 4. YAML and encoding errors with their position --------------------------------------------------


def test_a_control_character_is_refused_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b'ncentral:\n  url: https://h.example.com\n  api_token: "abc\x01def"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid YAML at line 3, column 18: character #x0001 is not allowed")
    assert "\n" not in message
    assert "abc" not in message  # not the token around it


def test_a_file_not_in_utf8_is_refused_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"ncentral:\n  url: https://h.example.com\n  api_token: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read config file: not UTF-8 at line 3, column 17 (byte offset 55)")
    assert "0xe9" in message
    assert "\n" not in message


def test_the_command_gives_one_line_for_a_control_character(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b'ncentral:\n  url: https://h.example.com\n  api_token: "abc\x01def"\n')
    result = run_command("--config.file", str(path), "--check-config")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "not valid YAML at line 3, column 18" in line


# --- 5. the standalone simulator's name ---------------------------------------------------------------


def test_the_standalone_simulator_help_names_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "exporter.simulator", "--help"], capture_output=True,
                            text=True, timeout=30, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m exporter.simulator ")
    assert "__main__" not in result.stdout




@pytest.mark.parametrize("url", ["https://h.example.com/n?key=SECRETQ", "https://h.example.com:0/n?key=SECRETQ",
                                 "https://h.example.com/n#SECRETQ"])
def test_a_url_error_quotes_scheme_host_and_path_only(tmp_path: Path, url: str) -> None:
    path = write_yaml(tmp_path / "config.yaml", {"ncentral": {"url": url, "api_token": "x"}})
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    message = str(caught.value)
    assert "ncentral.url" in message and "h.example.com" in message and "SECRETQ" not in message
