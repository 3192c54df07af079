"""Set-up mistakes a new user makes: caught by --check-config, and fixes that take effect at once."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MakeApp
from helpers import (
    ExporterProcess,
    config_document,
    free_port,
    make_config,
    report_result,
    reports_of,
    run_command,
    sample,
    scrape,
    select,
    wait_for,
    with_report,
    write_yaml,
)

from exporter.cli import build_parser
from exporter.config import Config, ConfigError, parse_duration
from exporter.config_file import load_config, parse_config
from exporter.simulator import DEMO_JWT, Simulator

pytestmark = pytest.mark.long

GOOD_WEB_CONFIG = "basic_auth_users: {}\n"



class Reloadable:
    """An in-process exporter whose next reload applies `next_config`."""

    def __init__(self, make_app: MakeApp, config: Config) -> None:
        self.next_config = config
        self.app = make_app(config, lambda: self.next_config)

    def has_data(self) -> bool:
        state = self.app.store.snapshot.get("all")
        return report_result(state).data is not None

    def failed(self, reason: str) -> bool:
        state = self.app.store.snapshot.get("all")
        return state is not None and state.failures.get(reason, 0) >= 1


MakeReloadable = Callable[[Config], Reloadable]


@pytest.fixture
def reloadable(make_app: MakeApp) -> MakeReloadable:
    return lambda config: Reloadable(make_app, config)


# --- recover at once -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mistake", ["url", "token"])
def test_a_reload_that_fixes_the_n_central_settings_runs_at_once(
    sim: Simulator, reloadable: MakeReloadable, mistake: str
) -> None:
    good = make_config(sim.url, sim.jwt, retries=1)
    wrong = replace(good, ncentral=replace(good.ncentral, url=f"http://127.0.0.1:{free_port()}")) \
        if mistake == "url" else replace(good, ncentral=replace(good.ncentral, token="wrong-jwt-0123456789"))
    item = reloadable(wrong)
    item.app.start()
    wait_for(lambda: item.failed("connection" if mistake == "url" else "auth"))
    item.next_config = good
    assert item.app.reload() is None
    wait_for(item.has_data, timeout=15)  # the interval is 1h: only an immediate run gets here
    assert item.app.not_ready() is None


def test_a_reload_interrupts_the_backoff_of_the_old_url(
    sim: Simulator, reloadable: MakeReloadable, caplog: pytest.LogCaptureFixture
) -> None:
    # A long backoff against a URL nobody listens on: the run would wait many minutes before it gave up.
    wrong = make_config(f"http://127.0.0.1:{free_port()}", sim.jwt, retries=5, retry_backoff=600.0)
    wrong = with_report(wrong, timeout=3600.0)
    item = reloadable(wrong)
    with caplog.at_level(logging.DEBUG, logger="exporter.client"):
        item.app.start()
        wait_for(lambda: any(r.getMessage().startswith("retrying in 600.0s") for r in caplog.records))
    item.next_config = make_config(sim.url, sim.jwt, retries=1)
    assert item.app.reload() is None
    wait_for(item.has_data, timeout=15)
    assert item.app.store.snapshot["all"].failures["connection"] == 0  # interrupted, not counted as failed


def test_a_reload_during_a_failing_run_runs_the_report_again(
    sim: Simulator, reloadable: MakeReloadable
) -> None:
    sim.add_fault("slow", endpoint="authenticate", delay=1.0)  # the run is mid-call when the reload comes
    wrong = make_config(sim.url, sim.jwt, retries=0)
    item = reloadable(wrong)
    item.app.start()
    wait_for(lambda: sim.count("authenticate") == 1)
    item.next_config = make_config(sim.url, sim.jwt, retries=1)
    assert item.app.reload() is None
    wait_for(item.has_data, timeout=15)
    state = item.app.store.snapshot["all"]
    assert state.runs_total == 2  # the failure of the old settings' run is counted, then the rerun succeeds
    assert state.failures["connection"] == 1


def test_a_reload_that_changes_a_failed_report_runs_it_now(sim: Simulator, reloadable: MakeReloadable) -> None:
    sim.set_outcome("FAILED")
    config = make_config(sim.url, sim.jwt, retries=1)
    item = reloadable(config)
    item.app.start()
    wait_for(lambda: item.failed("report_failed"))
    sim.set_outcome("COMPLETED")
    item.next_config = with_report(config, timeout=6.0)  # same filters
    assert item.app.reload() is None
    wait_for(item.has_data, timeout=15)


def test_a_reload_that_changes_nothing_of_a_good_report_does_not_run_it(
    sim: Simulator, reloadable: MakeReloadable, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(sim.url, sim.jwt, retries=1)
    item = reloadable(config)
    item.app.start()
    wait_for(item.has_data)
    item.next_config = with_report(config, timeout=6.0)
    with caplog.at_level(logging.INFO, logger="exporter.app"):
        assert item.app.reload() is None
    reloaded = [r for r in caplog.records if r.getMessage() == "configuration reloaded"]
    assert reloaded[0].run_now == []  # type: ignore[attr-defined]
    assert sim.count("submit") == 1


def test_sighup_after_fixing_the_url_yields_data_within_seconds(sim: Simulator, tmp_path: Path) -> None:
    document = config_document(sim, interval="10m")
    document["ncentral"]["url"] = f"http://127.0.0.1:{free_port()}/api"
    config = write_yaml(tmp_path / "config.yaml", document)
    exporter = ExporterProcess(tmp_path, "--config.file", str(config))
    try:
        exporter.wait_healthy()
        wait_for(lambda: sample(exporter.scrape(), "ncentral_patch_report_failures_total", report="all",
                                reason="connection") == 1)
        assert exporter.get("/-/ready").status_code == 503
        document["ncentral"]["url"] = f"{sim.url}/api/"
        write_yaml(config, document)
        exporter.signal(signal.SIGHUP)
        wait_for(lambda: select(exporter.scrape(), "ncentral_patch_approvals"), timeout=15)
        assert exporter.get("/-/ready").status_code == 200
        samples = exporter.scrape()
        assert sample(samples, "ncentral_server_info", version="2025.4.0.12", api_version="3.1.0") == 1
    finally:
        assert exporter.stop() == 0
    log = exporter.log()
    assert log.count("report interval is below 15m") == 2  # at start-up, and on reload (still 10m)
    assert log.count("ncentral.url normalised") == 2  # the first URL, then the fixed one
    assert "127.0.0.1:" in log.split("report run failed", 1)[1].split("\n", 1)[0]  # host:port in the failure


# --- --check-config checks what start-up checks ----------------------------------------------------------


def _check(tmp_path: Path, sim: Simulator, case: str) -> tuple[list[str], str]:
    """The arguments for `case` and the text its one error line must hold."""
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    base = ["--config.file", str(config), "--check-config"]
    web = tmp_path / "web.yml"
    if case == "web-config-missing":
        return [*base, f"--web.config.file={tmp_path / 'absent-web.yml'}"], "--web.config.file: "
    if case == "web-config-invalid":
        web.write_text("tls_server_config:\n  cert_file: /absent.crt\n  key_file: /absent.key\n", encoding="utf-8")
        return [*base, f"--web.config.file={web}"], "--web.config.file: "
    if case == "listen-address":
        return [*base, "--web.listen-address", "bogus"], "--web.listen-address: expected [HOST]:PORT"
    if case == "listen-host":
        return [*base, "--web.listen-address", "no-such-host.invalid:10120"], "--web.listen-address: cannot resolve"
    if case == "url-port":
        document = config_document(sim)
        document["ncentral"]["url"] = "https://nc.example.com:99999"
        write_yaml(config, document)
        return base, "ncentral.url: invalid port"
    if case == "storage-directory-missing":
        return [*base, f"--storage.path={tmp_path / 'absent' / 'state.json'}"], "--storage.path: directory"
    if case == "storage-unwritable":
        # /proc refuses new files even to root, who may write anywhere else.
        return [*base, "--storage.path=/proc/state.json"], "--storage.path: cannot write in /proc"
    if case == "storage-key-unwritable":
        document = config_document(sim)
        document["storage"] = {"path": "/proc/state.json"}
        write_yaml(config, document)
        return base, "storage.path: cannot write in /proc"
    if case == "storage-is-a-directory":
        return [*base, f"--storage.path={tmp_path}"], "--storage.path: "
    if case == "notices-then-bad-report":
        # Parsing notes a normalised URL and warns of a short scan interval before it reaches the bad report:
        # neither may be said for a refused config.
        document = config_document(sim, interval="1x")
        document["ncentral"]["url"] = f"{sim.url}/api"
        document["customers"] = {"interval": "1m"}
        write_yaml(config, document)
        return base, "reports[0].interval: invalid duration"
    if case == "notices-then-bad-storage":
        document = config_document(sim)
        document["ncentral"]["url"] = f"{sim.url}/api"
        document["customers"] = {"interval": "1m"}
        write_yaml(config, document)
        return [*base, f"--storage.path={tmp_path / 'absent' / 'state.json'}"], "--storage.path: directory"
    raise AssertionError(case)


CHECK_CASES = [
    "web-config-missing", "web-config-invalid", "listen-address", "listen-host", "url-port",
    "storage-directory-missing", "storage-unwritable", "storage-key-unwritable", "storage-is-a-directory",
    "notices-then-bad-report", "notices-then-bad-storage",
]


@pytest.mark.parametrize("case", CHECK_CASES)
def test_check_config_refuses_what_start_up_refuses(sim: Simulator, tmp_path: Path, case: str) -> None:
    args, expected = _check(tmp_path, sim, case)
    checked = run_command(*args)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1, checked.stderr
    assert lines[0].startswith("ncentral-patch-exporter: error: ")
    assert expected in lines[0]
    assert "OK" not in checked.stdout


@pytest.mark.parametrize("case", ["web-config-missing", "storage-unwritable", "notices-then-bad-storage"])
def test_start_up_refuses_the_same_with_the_same_line(sim: Simulator, tmp_path: Path, case: str) -> None:
    args, expected = _check(tmp_path, sim, case)
    args.remove("--check-config")
    started = run_command(*args, f"--web.listen-address=127.0.0.1:{free_port()}", timeout=30)
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert lines[0].startswith(f"ncentral-patch-exporter: error: {expected}")


def test_check_config_passes_a_good_setup(sim: Simulator, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    web = tmp_path / "web.yml"
    web.write_text(GOOD_WEB_CONFIG, encoding="utf-8")
    result = run_command("--config.file", str(config), "--check-config", f"--web.config.file={web}",
                         f"--storage.path={tmp_path / 'state.json'}", "--web.listen-address=localhost:10120",
                         "--log.level=warn", "--log.format=logfmt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: OK (1 report(s): all)\n"
    assert not (tmp_path / "state.json").exists()  # checked, not written


def test_demo_check_config_names_the_built_in_config_not_a_file(tmp_path: Path) -> None:
    absent = tmp_path / "config.yaml"
    result = run_command("--demo", "--check-config", "--config.file", str(absent))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("built-in demo configuration (--demo; --config.file is not read): "
                             "OK (1 report(s): all; customer scan every 60s, timeout 600s; "
                             "patch status scan every 600s, timeout 3600s)\n")
    assert str(absent) not in result.stdout
    bad = run_command("--demo", "--check-config", "--web.listen-address", "bogus")
    assert bad.returncode == 2


# --- state writes ------------------------------------------------------------------------------------------


def test_failed_state_writes_are_counted(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    app = make_app(replace(make_config(sim.url, sim.jwt, retries=1), storage_path=str(directory / "state.json")))
    samples = scrape(app)
    assert sample(samples, "ncentral_patch_exporter_state_write_failures_total") == 0
    directory.rename(tmp_path / "gone")  # the volume went away: not silently created again
    with caplog.at_level(logging.ERROR, logger="exporter.store"):
        assert app.run_once()
    samples = scrape(app)
    failures = sample(samples, "ncentral_patch_exporter_state_write_failures_total")
    assert failures is not None and failures >= 1
    assert not directory.exists()
    assert any(r.getMessage() == "cannot write the state file" for r in caplog.records)
    assert select(samples, "ncentral_patch_approvals")  # the results stay in memory


# --- habits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    ("1h30m", 5400), ("90m", 5400), ("1w", 604800), ("1y", 31536000), ("500ms", 0.5), ("1d", 86400),
    ("1d12h", 129600), ("2m30s", 150), ("1s500ms", 1.5), ("1.5h", 5400), ("0s", 0),
])
def test_prometheus_durations(value: str, seconds: float) -> None:
    assert parse_duration(value, "key") == seconds


@pytest.mark.parametrize("value", ["1m1h", "1h 30m", "1.5h30m", "ms", "h", "30", "-1h", "1y1y"])
def test_malformed_durations_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^reports\[0\]\.interval: "):
        parse_duration(value, "reports[0].interval")


def test_durations_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "ncentral:\n  url: https://nc.example.com\n  api_token: x\n  request_timeout: 1m30s\n"
        "reports:\n  - name: all\n    interval: 1h30m\n    timeout: 1w\n    max_data_age: 1d12h\n",
        encoding="utf-8",
    )
    config = load_config(str(path), env={})
    assert config.ncentral.request_timeout == 90
    report = reports_of(config)[0]
    assert (report.interval, report.timeout, report.max_data_age) == (5400, 604800, 129600)


def test_an_unquoted_impossible_date_names_the_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "ncentral:\n  url: https://nc.example.com\n  api_token: x\nreports:\n  - name: all\n"
        "    interval: 1h\n    start_date: 2025-13-01\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(str(path), env={})
    assert str(error.value) == (
        f"{path}: reports[0].start_date: invalid start date '2025-13-01' at line 7 "
        "(use YYYY-MM-DD or a rolling window like 90d)"
    )


@pytest.mark.parametrize(("given", "url"), [
    ("https://nc.example.com/api", "https://nc.example.com"),
    ("https://nc.example.com/api/", "https://nc.example.com"),
    ("https://nc.example.com/", "https://nc.example.com"),
    ("https://nc.example.com:8443/API", "https://nc.example.com:8443"),
    ("https://proxy.example.com/ncentral/api", "https://proxy.example.com/ncentral"),
    ("https://nc.example.com/api-explorer", "https://nc.example.com/api-explorer"),
])
def test_urls_are_normalised(tmp_path: Path, given: str, url: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"ncentral:\n  url: {given}\n  api_token: x\n", encoding="utf-8")
    assert load_config(str(path), env={}).ncentral.url == url


@pytest.mark.parametrize("given", ["https://nc.example.com:0", "https://nc.example.com:http", "https://:443",
                                   "https://nc.example.com/?x=1"])
def test_bad_urls_name_the_key(tmp_path: Path, given: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"ncentral:\n  url: '{given}'\n  api_token: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r": ncentral\.url: "):
        load_config(str(path), env={})


@pytest.mark.parametrize(("flag", "dest", "value"), [
    ("--log.level=warn", "log_level", "warning"), ("--log.level=WARN", "log_level", "warning"),
    ("--log.level=debug", "log_level", "debug"), ("--log.format=logfmt", "log_format", "text"),
    ("--log.format=json", "log_format", "json"),
])
def test_go_exporter_log_flags_are_accepted(flag: str, dest: str, value: str) -> None:
    assert getattr(build_parser().parse_args([flag]), dest) == value


def test_an_unknown_log_level_is_still_refused() -> None:
    result = run_command("--log.level=loud", "--check-config")
    assert result.returncode == 2
    assert "--log.level" in result.stderr


def test_short_intervals_are_warned_about_on_reload(
    sim: Simulator, reloadable: MakeReloadable, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(sim.url, sim.jwt, retries=1)
    item = reloadable(config)
    document = config_document(sim)
    document["reports"] = [{**document["reports"][0], "interval": "1s"},
                           {**document["reports"][0], "name": "other", "interval": "15m"}]
    item.next_config = parse_config(document, env={})  # as the reload's loader gives it
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        assert item.app.reload() is None
    warned = [r for r in caplog.records if r.getMessage().startswith("report interval is below 15m")]
    assert [r.report for r in warned] == ["all"]  # type: ignore[attr-defined]
    assert reports_of(item.app.config)[0].interval == 1.0  # warned, not refused


# --- the README's recipes --------------------------------------------------------------------------------


def _textfile_recipe() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("#!/bin/sh\ndir=/var/lib/node_exporter/textfile")
    return readme[start:readme.index("```", start)]


@pytest.mark.parametrize("outcome", ["COMPLETED", "FAILED"])
def test_the_textfile_recipe_leaves_no_temporary_file(sim: Simulator, tmp_path: Path, outcome: str) -> None:
    sim.set_outcome(outcome)
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    command = Path(sys.executable).parent / "ncentral-patch-exporter"
    script = (_textfile_recipe()
              .replace("/var/lib/node_exporter/textfile", str(textfile))
              .replace("/opt/ncentral-patch-exporter/bin/ncentral-patch-exporter", str(command))
              .replace("/etc/ncentral-patch-exporter/config.yaml", str(config)))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == (0 if outcome == "COMPLETED" else 1), result.stderr
    expected = ["ncentral_patch.prom"] if outcome == "COMPLETED" else []
    assert sorted(path.name for path in textfile.iterdir()) == expected


def test_the_readme_names_the_token_the_simulator_accepts() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"accepts\n  only its JWT, `{DEMO_JWT}`" in readme
