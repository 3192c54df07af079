from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import reports_of, run_command

from exporter.config import ConfigError, parse_duration
from exporter.config_file import load_config, parse_config
from exporter.reports import ReportSettings, request_body
from exporter.simulator import Simulator

MINIMAL = "ncentral:\n  url: https://nc.example.com\n  api_token: jwt-from-file\n"


def alias_bomb(levels: int) -> str:
    """A config whose report name is `levels` levels of nine aliases each: 9**levels values from a few
    hundred bytes."""
    anchors = ["&a0 [" + ", ".join(["x"] * 9) + "]"]
    anchors += [f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]" for level in range(1, levels)]
    return MINIMAL + "reports:\n  - name: [" + ", ".join(anchors) + "]\n"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.ncentral.url == "https://nc.example.com"
    assert config.ncentral.verify_tls is True
    assert config.ncentral.request_timeout == 30
    assert config.ncentral.max_response_size == 4 * 2**20
    assert config.ncentral.max_series == 5000
    assert config.collections == (ReportSettings(name="all"),)
    report = reports_of(config)[0]
    assert (report.interval, report.start_date, report.timeout) == (3600, "90d", 1800)
    assert (report.poll_interval, report.poll_max_interval) == (2, 30)
    assert config.storage_path is None


def test_full_config_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("jwt-in-file\n", encoding="utf-8")
    text = f"""
ncentral:
  url: https://nc.example.com/
  api_token_file: {token_file}
  verify_tls: false
  request_timeout: 500ms
  max_response_size: 1MiB
  retries: 2
  retry_backoff: 1s
storage:
  path: {tmp_path}/state.json
reports:
  - name: servers-security
    interval: 2h
    start_date: 2025-08-01
    install_statuses: [installed, Failed]
    patch_approvals: [Approved for Install]
    patch_categories: [Security Updates, Critical Updates]
    timeout: 5m
    poll_interval: 1
    poll_max_interval: 1d
    max_data_age: 6h
"""
    config = load_config(write(tmp_path, text), env={})
    assert config.ncentral.url == "https://nc.example.com"
    assert config.ncentral.token == "jwt-in-file"
    assert config.ncentral.request_timeout == 0.5
    assert config.ncentral.max_response_size == 2**20
    assert config.storage_path == f"{tmp_path}/state.json"
    report = reports_of(config)[0]
    assert report.install_statuses == ("Installed", "Failed")  # normalised to the vendor's spelling
    assert report.start_date == "2025-08-01"
    assert (report.interval, report.timeout, report.poll_max_interval, report.max_data_age) == (
        7200, 300, 86400, 21600
    )
    assert request_body(report, dt.date(2026, 1, 1)) == {
        "startDate": "2025-08-01",
        "installStatuses": ["Installed", "Failed"],
        "patchApprovals": ["Approved for Install"],
        "patchCategories": ["Security Updates", "Critical Updates"],
    }


def test_rolling_start_date_and_left_out_filters() -> None:
    report = ReportSettings(name="all", start_date="30d")
    assert request_body(report, dt.date(2026, 3, 1)) == {"startDate": "2026-01-30"}


def test_token_from_environment_wins(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={"NCENTRAL_API_TOKEN": "jwt-from-env"})
    assert config.ncentral.token == "jwt-from-env"


def test_token_is_not_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert "jwt-from-file" not in repr(config)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (45, 45), ("1.5s", 1.5)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, "key") == seconds


def test_fingerprint_changes_with_filters_only() -> None:
    base = ReportSettings(name="all")
    assert base.fingerprint == ReportSettings(name="all", interval=60).fingerprint
    assert base.fingerprint != ReportSettings(name="all", patch_approvals=("Declined",)).fingerprint
    assert base.fingerprint != ReportSettings(name="all", start_date="30d").fingerprint


BAD_CONFIGS: list[tuple[str, str, str]] = [
    ("missing-file", "", "config file not found"),
    ("not-yaml", "ncentral: [unclosed\n", "not valid YAML"),
    ("top-unknown", MINIMAL + "extra: 1\n", "extra: unknown key"),
    ("ncentral-unknown", MINIMAL + "  colour: blue\n", "ncentral.colour: unknown key"),
    ("no-url", "ncentral:\n  api_token: x\n", "ncentral.url: required"),
    ("bad-url", "ncentral:\n  url: nc.example.com\n  api_token: x\n", "ncentral.url"),
    ("no-token", "ncentral:\n  url: https://nc.example.com\n", "ncentral.api_token: no token"),
    ("token-file-missing", "ncentral:\n  url: https://a.b\n  api_token_file: /nonexistent/token\n",
     "ncentral.api_token_file: cannot read /nonexistent/token"),
    ("bad-duration", MINIMAL + "reports:\n  - name: all\n    interval: soon\n",
     "reports[0].interval: invalid duration 'soon'"),
    ("zero-interval", MINIMAL + "reports:\n  - name: all\n    interval: 0s\n", "reports[0].interval"),
    ("bad-filter", MINIMAL + "reports:\n  - name: all\n    patch_approvals: [Maybe]\n",
     "reports[0].patch_approvals: unknown value 'Maybe'"),
    ("report-unknown", MINIMAL + "reports:\n  - name: all\n    colour: red\n", "reports[0].colour: unknown key"),
    ("bad-name", MINIMAL + "reports:\n  - name: All Patches\n", "reports[0].name"),
    ("no-name", MINIMAL + "reports:\n  - interval: 1h\n", "reports[0].name: required"),
    ("duplicate-name", MINIMAL + "reports:\n  - name: a\n  - name: a\n", "reports[1].name: duplicate"),
    ("bad-date", MINIMAL + "reports:\n  - name: a\n    start_date: yesterday\n", "reports[0].start_date"),
    ("verify-not-bool", MINIMAL + "  verify_tls: maybe\n", "ncentral.verify_tls"),
    ("bad-size", MINIMAL + "  max_response_size: lots\n", "ncentral.max_response_size"),
    ("impossible-date", MINIMAL + "reports:\n  - name: a\n    start_date: 2025-02-30\n",
     "reports[0].start_date: invalid start date '2025-02-30' at line 6"),
    ("infinite-interval", MINIMAL + "reports:\n  - name: a\n    interval: .inf\n", "reports[0].interval"),
    ("nan-timeout", MINIMAL + "reports:\n  - name: a\n    timeout: .nan\n", "reports[0].timeout"),
    ("absurd-interval", MINIMAL + "reports:\n  - name: a\n    interval: 10000000000d\n", "reports[0].interval"),
    ("absurd-window", MINIMAL + "reports:\n  - name: a\n    start_date: 99999d\n", "reports[0].start_date"),
    ("token-with-newline", "ncentral:\n  url: https://a.b\n  api_token: \"abc\\ndefghijkl\"\n",
     "ncentral.api_token: the token contains whitespace"),
    ("not-a-mapping", "- just\n- a list\n", "the configuration: must be a mapping"),
    ("reports-not-list", MINIMAL + "reports: all\n", "reports: must be a non-empty list"),
    ("giant-number", MINIMAL + "reports:\n  - name: a\n    interval: " + "9" * 400 + "\n", "reports[0].interval"),
    ("too-many-retries", MINIMAL + "  retries: 100\n", "ncentral.retries: must be a whole number from 0 to 20"),
    ("zero-backoff", MINIMAL + "  retry_backoff: 0s\n", "ncentral.retry_backoff: duration must be greater"),
    ("token-not-ascii", "ncentral:\n  url: https://a.b\n  api_token: jwt\u20acsecret\n",
     "ncentral.api_token: the token contains non-ASCII characters"),
    ("alias-bomb", alias_bomb(6), "aliases (*name) expand the document by more than 10000 values"),
    ("alias-text-bomb", MINIMAL + 'reports:\n  - name: [&s "' + "A" * 20_000 + '", ' + ", ".join(["*s"] * 10) + "]\n",
     "aliases (*name) expand the document by more than 100000 characters of text"),
    ("alias-loop", MINIMAL + "reports: &r [*r]\n", "an alias refers to a node from inside itself"),
    # Refused at the 65th level, not after a megabyte of recursion.
    ("deep-flow", MINIMAL + "reports: " + "[" * 1_000_000 + "\n",
     "not valid YAML at line 4, column 75: nested more than 64 levels deep"),
    ("deep-block", MINIMAL + "reports:\n" + "".join(" " * level + "- \n" for level in range(1, 70)),
     "not valid YAML at line 68, column 66: nested more than 64 levels deep"),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_clear_line(tmp_path: Path, case: str, text: str, expected: str) -> None:
    path = str(tmp_path / "absent.yaml") if case == "missing-file" else write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(path)


# The command's exit paths for a bad config, one subprocess each (the messages are checked in-process above).
EXIT_PATHS = [("missing-file", "--check-config"), ("bad-filter", "--web.listen-address=127.0.0.1:0"),
              ("no-token", "--once"), ("alias-bomb", "--check-config"), ("alias-text-bomb", "--check-config")]


@pytest.mark.parametrize(("case", "mode"), EXIT_PATHS, ids=[mode.split("=")[0] for _, mode in EXIT_PATHS])
def test_bad_config_exits_2_without_traceback(tmp_path: Path, case: str, mode: str) -> None:
    text, expected = next((text, expected) for name, text, expected in BAD_CONFIGS if name == case)
    path = str(tmp_path / "absent.yaml") if case == "missing-file" else write(tmp_path, text)
    result = run_command("--config.file", path, mode)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_check_config_ok(tmp_path: Path) -> None:
    result = run_command("--config.file", write(tmp_path, MINIMAL), "--check-config")
    assert result.returncode == 0
    assert result.stdout.strip().endswith("OK (1 report(s): all)")


HUGE = ["A" * 100_000] * 100  # ten megabytes of text, as aliases or a big file could make it


@pytest.mark.parametrize(("section", "key"), [
    ("ncentral", "url"), ("ncentral", "verify_tls"), ("ncentral", "retries"), ("ncentral", "max_response_size"),
    ("reports", "name"), ("reports", "start_date"), ("reports", "interval"), ("reports", "install_statuses"),
    ("customers", "include"), ("customers", "interval"),
])
def test_a_huge_value_is_quoted_in_a_short_line(section: str, key: str) -> None:
    value: object = HUGE if key != "install_statuses" else HUGE[:1]
    data: dict[str, Any] = {"ncentral": {"url": "https://a.b", "api_token": "x"}}
    if section == "ncentral":
        data["ncentral"][key] = value
    else:
        data[section] = [{"name": "a", key: value}] if section == "reports" else {key: value}
    with pytest.raises(ConfigError) as error:
        parse_config(data, env={})
    message = str(error.value)
    assert message.startswith(f"{section}{'[0]' if section == 'reports' else ''}.{key}"), message
    assert len(message) < 400, message[:400]


def test_parse_config_requires_ncentral() -> None:
    with pytest.raises(ConfigError, match="ncentral: required"):
        parse_config({}, env={})


def test_no_reports_key_means_one_default_report() -> None:
    data: dict[str, Any] = {"ncentral": {"url": "https://a.b", "api_token": "x"}}
    assert [r.name for r in reports_of(parse_config(data, env={}))] == ["all"]


def test_a_non_ascii_token_exits_2_without_echoing_it(sim: Simulator, tmp_path: Path) -> None:
    """--check-connection is where such a token would end in an encoding traceback, in the request header."""
    path = write(tmp_path, f"ncentral:\n  url: {sim.url}\n")
    result = run_command("--config.file", path, "--check-connection", env={"NCENTRAL_API_TOKEN": "jwt\u20acsecret"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"ncentral-patch-exporter: error: {path}: environment variable NCENTRAL_API_TOKEN: the token contains "
        "non-ASCII characters (a JWT is ASCII only)"
    ]
    assert "secret" not in result.stdout + result.stderr
    assert sim.count("authenticate") == 0


@pytest.mark.parametrize(("kind", "reason"), [
    ("directory", "a directory, not a regular file"),
    ("device", "a character device, not a regular file"),
    ("over-64-KiB", "larger than 64 KiB"),
])
def test_a_token_file_is_read_only_if_a_small_regular_file(tmp_path: Path, kind: str, reason: str) -> None:
    token_file = {"directory": tmp_path, "device": Path(os.devnull), "over-64-KiB": tmp_path / "token"}[kind]
    if kind == "over-64-KiB":
        token_file.write_text("j" * (64 * 1024 + 1))
    path = write(tmp_path, f"ncentral:\n  url: https://a.b\n  api_token_file: {token_file}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert str(error.value) == f"{path}: ncentral.api_token_file: cannot read {token_file}: {reason}"


def test_a_config_over_1_MiB_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "# padding\n" * (2**20 // 10))
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert str(error.value) == f"{path}: cannot read config file: larger than 1 MiB"


@pytest.mark.parametrize("fifo_is", ["config", "token-file", "web-config"])
def test_a_fifo_ends_check_config_at_once_with_one_line(tmp_path: Path, fifo_is: str) -> None:
    """Opening a FIFO nobody writes to would wait for good (and a signal would not end the wait)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    token = fifo if fifo_is == "token-file" else tmp_path / "token"
    if fifo_is != "token-file":
        token.write_text("jwt")
    path = str(fifo) if fifo_is == "config" else write(
        tmp_path, f"ncentral:\n  url: https://a.b\n  api_token_file: {token}\n")
    flags = ("--web.config.file", str(fifo)) if fifo_is == "web-config" else ()
    result = run_command("--config.file", path, *flags, "--check-config", timeout=20)
    assert result.returncode == 2
    where, key = {
        "config": (path, "cannot read config file"),
        "token-file": (path, f"ncentral.api_token_file: cannot read {fifo}"),
        "web-config": (f"--web.config.file: {fifo}", "cannot read web config file"),
    }[fifo_is]
    assert result.stderr.splitlines() == [
        f"ncentral-patch-exporter: error: {where}: {key}: a FIFO (named pipe), not a regular file"
    ]
