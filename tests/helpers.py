"""Shared test helpers: free ports, waiting on conditions, configs, the exporter as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter import customers, reports
from exporter.config import Config, NCentralSettings
from exporter.customers import CustomerSettings
from exporter.exposition import Exposition
from exporter.reports import ReportResult, ReportSettings
from exporter.simulator import Simulator
from exporter.store import CollectionState

if TYPE_CHECKING:
    from exporter.app import Exporter

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# A report that polls fast and gives up soon: tests wait for nothing longer than they must.
QUICK_REPORT = ReportSettings(name="all", poll_interval=0.01, poll_max_interval=0.05, timeout=5.0)


def make_config(
    target: Simulator | str,
    token: str = "",
    *,
    reports: tuple[ReportSettings, ...] = (QUICK_REPORT,),
    report: Mapping[str, Any] | None = None,
    storage: Path | None = None,
    **ncentral: Any,
) -> Config:
    """A config against `target` (a simulator, or a URL and its `token`): `reports` (the quick report `all`,
    its fields changed by `report`), fast timeouts and retries (changed by `ncentral`), a state file at
    `storage`."""
    url, jwt = (target, token) if isinstance(target, str) else (target.url, target.jwt)
    return Config(
        ncentral=NCentralSettings(**{"url": url, "token": jwt, "request_timeout": 2.0, "retries": 2,
                                     "retry_backoff": 0.01, **ncentral}),
        collections=tuple(replace(settings, **(report or {})) for settings in reports),
        storage_path=str(storage) if storage is not None else None,
    )


def reports_of(config: Config) -> list[ReportSettings]:
    """The config's reports, in order."""
    return reports.KIND.of(config.collections)


def with_report(config: Config, **changes: Any) -> Config:
    """`config` with its first report's settings changed."""
    first = reports_of(config)[0]
    return replace(config, collections=tuple(
        replace(first, **changes) if collection is first else collection for collection in config.collections
    ))


def scan_settings(config: Config) -> CustomerSettings:
    """The config's customer scan settings (the scan must be configured)."""
    (settings,) = customers.KIND.of(config.collections)
    return settings


def report_result(state: CollectionState | None) -> ReportResult:
    """A report's stored result (empty if none)."""
    result = state.result if state is not None else None
    assert result is None or isinstance(result, ReportResult)
    return result or ReportResult()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(cond: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `cond` until it returns something truthy; fail the test with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {getattr(cond, '__name__', cond)}")
        time.sleep(interval)


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition text, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """All samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {key: value for (sample_name, key), value in samples.items() if sample_name == name and wanted <= key}


def config_document(
    sim: Simulator, *, sections: Mapping[str, Any] | None = None, ncentral: Mapping[str, Any] | None = None,
    **report: Any,
) -> dict[str, Any]:
    """The config document (as the YAML file would read) for the exporter against `sim`: one report `all`
    with short intervals (`report` overrides its keys), fast retries (`ncentral` overrides those keys), and
    the collection kinds' `sections` beside it (`{"customers": {...}}`)."""
    settings: dict[str, Any] = {
        "name": "all", "interval": "1h", "poll_interval": "20ms", "poll_max_interval": "100ms", "timeout": "10s",
    }
    settings.update(report)
    return {
        "ncentral": {"url": sim.url, "api_token": sim.jwt, "request_timeout": "2s", "retry_backoff": "10ms",
                     **(ncentral or {})},
        "reports": [settings],
        **(sections or {}),
    }




def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


def config_file(tmp_path: Path, sim: Simulator, **document: Any) -> str:
    """The path of a config file for the exporter against `sim`: `config_document(sim, **document)`, for a
    test that needs an exporter that serves but not the demo's collections."""
    return str(write_yaml(tmp_path / "config.yaml", config_document(sim, **document)))


def child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """This environment for a child exporter, without a token of the caller's unless `env` gives one."""
    full_env = {key: value for key, value in os.environ.items() if key != "NCENTRAL_API_TOKEN"}
    full_env.update(env or {})
    return full_env


class ExporterProcess:
    """The real command as a subprocess on a free loopback port; stderr goes to a file for inspection."""

    def __init__(self, tmp_path: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"exporter-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{self.port}", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(env), cwd=REPO,
        )

    def wait_healthy(self, timeout: float = 15.0) -> None:
        def healthy() -> bool:
            assert self.process.poll() is None, f"exporter exited early:\n{self.log()}"
            try:
                return requests.get(f"{self.url}/-/healthy", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, timeout)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=5, **kwargs)

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200
        return parse_samples(response.text)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def run_command(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=timeout, env=child_env(env),
        cwd=REPO, check=False,
    )


# --- Prometheus and Alertmanager as child processes (test_dashboards.py, test_alerts.py) ----------------

PROMETHEUS_DIR = REPO / "prometheus"


def alertmanager_binary() -> str:
    """Debian installs Alertmanager as prometheus-alertmanager; upstream calls it alertmanager."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory and (Path(directory) / "prometheus-alertmanager").is_file():
            return str(Path(directory) / "prometheus-alertmanager")
    return "alertmanager"


_Child = TypeVar("_Child", bound="ChildProcess")


class ChildProcess:
    """A server binary on loopback as a context manager: started and ready (`ready_url` answers 200) on
    enter, always terminated and reaped on exit. Output goes to `log_path`."""

    def __init__(self, args: list[str], log_path: Path, ready_url: str, timeout: float = 20.0,
                 cwd: Path | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.ready_url = ready_url
        self.timeout = timeout
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return "<no log>"

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.args[0]} exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(self.ready_url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def __enter__(self: _Child) -> _Child:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
            )
        try:
            wait_for(self._ready, self.timeout, interval=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def prometheus_test_config(exporter: str, self_address: str, rule_files: list[Path],
                           alertmanager: str | None = None) -> dict[str, Any]:
    """The shipped prometheus/prometheus.yml pointed at loopback addresses, with 1 s intervals."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in rule_files]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    targets = {"ncentral-patch-exporter": exporter, "prometheus": self_address}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class PrometheusServer(ChildProcess):
    """A real Prometheus on a free loopback port, scraping `exporter` (host:port) every second."""

    def __init__(self, tmp_path: Path, exporter: str, rule_files: list[Path],
                 alertmanager: str | None = None) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.address}"
        config = write_yaml(tmp_path / "prometheus.yml",
                            prometheus_test_config(exporter, self.address, rule_files, alertmanager))
        super().__init__(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
             f"--web.listen-address={self.address}", "--log.level=warn"],
            tmp_path / "prometheus.log", f"{self.url}/-/ready",
        )

    def api(self, path: str, **params: str) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        assert response.status_code == 200, f"{path} {params}: {response.status_code} {response.text[:500]}"
        answer = response.json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        """`expr` through /api/v1/query, or /api/v1/query_range when `start` is given; the result list."""
        result: list[dict[str, Any]] = self.api("query_range" if "start" in params else "query",
                                                query=expr, **params)["result"]
        return result


class AlertmanagerServer(ChildProcess):
    """A real Alertmanager on a free loopback port (clustering off) with the given configuration."""

    def __init__(self, tmp_path: Path, config: Mapping[str, Any]) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        config_path = write_yaml(tmp_path / "alertmanager.yml", config)
        super().__init__(
            [alertmanager_binary(), f"--config.file={config_path}",
             f"--storage.path={tmp_path / 'alertmanager-data'}", f"--web.listen-address={self.address}",
             "--cluster.listen-address=", "--log.level=warn"],
            tmp_path / "alertmanager.log", f"http://{self.address}/-/ready",
        )


class ReadyExporter(ChildProcess):
    """`python -m exporter ARGS` on a free loopback port, entered once /-/ready answers 200."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        super().__init__(
            [sys.executable, "-m", "exporter", f"--web.listen-address={self.address}", *args],
            tmp_path / f"exporter-{self.address.rsplit(':', 1)[1]}.log", f"http://{self.address}/-/ready",
            cwd=REPO,
        )


def metrics_body(exposition: Exposition, *, gzipped: bool = False, openmetrics: bool = False) -> bytes:
    """The /metrics body as the web front writes it: the cached collections part, then the live part."""
    return b"".join(exposition.render_parts(gzipped=gzipped, openmetrics=openmetrics))


def scrape(source: Exporter | Exposition) -> Samples:
    """Every sample of the exporter's (or an exposition's) /metrics body, as the web front would serve it."""
    exposition = source if isinstance(source, Exposition) else source.exposition
    return parse_samples(metrics_body(exposition).decode())
