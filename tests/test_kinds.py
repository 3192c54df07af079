"""A collection kind is one module, one config section and one registry line: a toy kind, defined here and
registered, is scheduled on its own interval and worker, stored, written to the state file and read back
after a restart, published on /metrics, shown on the landing page, run by --once and summarised by
--check-config, with no other module told of it."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from conftest import MakeApp
from helpers import config_file, parse_samples, sample, wait_for
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import cli, registry
from exporter.collection import ResultType
from exporter.config import ConfigError, Notice, mapping, positive_duration
from exporter.config_file import load_config
from exporter.kind import CustomerColumn, Kind, Memo
from exporter.live_client import CollectionRun
from exporter.simulator import Simulator
from exporter.store import CollectionState
from exporter.web import WebServer
from exporter.webconfig import WebConfig

# --- the toy kind: it counts the devices on N-central's first page of devices --------------------------


@dataclass(frozen=True)
class DeviceCount:
    devices: int

    def to_json(self) -> dict[str, Any]:
        return {"devices": self.devices}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], now: float) -> DeviceCount:
        devices = raw["devices"]
        if isinstance(devices, bool) or not isinstance(devices, int) or devices < 0:
            raise TypeError(f"devices: expected a count, got {devices!r}")
        return cls(devices)


@dataclass(frozen=True)
class DeviceCountSettings:
    kind: ClassVar[str] = "device_count"
    result_type: ClassVar[ResultType] = DeviceCount

    interval: float = 3600.0
    name: str = "device_count"

    @property
    def fingerprint(self) -> str:
        return "first-page"


threads: list[str] = []  # the threads the toy's runs ran on


class DeviceCountRun(CollectionRun):
    def run(self, name: str) -> bool:
        config, client = self._clients.current()
        settings = config.collection(name)
        if not isinstance(settings, DeviceCountSettings):
            return False
        threads.append(threading.current_thread().name)
        devices = len(client.get("/api/devices?pageNumber=1&pageSize=1000", self._monotonic() + 5)["data"])
        now = self._wall()
        return self._record(settings, client, lambda state: replace(
            state, result=DeviceCount(devices), last_run_success=True, last_run_time=now, last_success_time=now,
            runs_total=state.runs_total + 1,
        ))


class DeviceCountKind(Kind[DeviceCountSettings]):
    settings_type = DeviceCountSettings
    run_type = DeviceCountRun
    section = "device_count"
    title = "device count"

    def parse(self, value: object, notices: list[Notice]) -> tuple[DeviceCountSettings, ...]:
        raw = mapping(value, self.section, {"interval"}, optional=True)
        if "interval" not in raw:
            raise ConfigError("device_count.interval: required")
        return (DeviceCountSettings(interval=positive_duration(raw["interval"], "device_count.interval")),)

    def summary(self, collections: Sequence[DeviceCountSettings]) -> str:
        return f"devices counted every {collections[0].interval:g}s"

    def families(self, states: Sequence[tuple[str, CollectionState]]) -> list[Metric]:
        family = GaugeMetricFamily("toy_devices", "Devices on the first page.", labels=["collection"])
        for name, state in states:
            if (result := self.result(state, DeviceCount)) is not None:
                family.add_metric([name], result.devices)
        return [family]

    def landing(
        self, collections: Sequence[tuple[DeviceCountSettings, CollectionState | None, dt.datetime | None]],
        now: float, memo: Memo, columns: Sequence[CustomerColumn] = (),
    ) -> str:
        return "".join(
            f'<section id="toy-{escape(settings.name)}">{result.devices} devices</section>'
            for settings, state, _ in collections
            if (result := self.result(state, DeviceCount)) is not None
        )


@pytest.fixture
def toy_kind(monkeypatch: pytest.MonkeyPatch) -> DeviceCountKind:
    """The toy registered: one registry line."""
    kind = DeviceCountKind()
    monkeypatch.setattr(registry, "KINDS", (*registry.KINDS, kind))
    threads.clear()
    return kind


def kind_config_file(sim: Simulator, tmp_path: Path, interval: str) -> str:
    """The shared test config with the toy kind's section, and a state file."""
    return config_file(tmp_path, sim, sections={"device_count": {"interval": interval},
                                                "storage": {"path": str(tmp_path / "state.json")}})


def test_a_new_kind_is_scheduled_stored_persisted_published_and_shown(
    sim: Simulator, tmp_path: Path, toy_kind: DeviceCountKind, make_app: MakeApp
) -> None:
    config = load_config(kind_config_file(sim, tmp_path, "50ms"))
    assert [collection.kind for collection in config.collections] == ["patch_report", "device_count"]
    app = make_app(config)
    server = WebServer(app, ("127.0.0.1", 0), "/metrics", WebConfig())
    server.start()
    try:
        app.start()
        # On its own interval: several runs while the hourly report has run once, on a worker of its own.
        wait_for(lambda: (state := app.store.snapshot["device_count"]).runs_total >= 3 and state)
        assert app.store.snapshot["all"].runs_total <= 1
        assert all(name.startswith("device_count-run") for name in threads)
        result = app.store.snapshot["device_count"].result
        assert isinstance(result, DeviceCount) and result.devices > 0
        devices = result.devices
        base = f"http://127.0.0.1:{server.address[1]}"
        samples = parse_samples(requests.get(f"{base}/metrics", timeout=10).text)
        assert sample(samples, "toy_devices", collection="device_count") == devices
        runs = sample(samples, "ncentral_patch_report_runs_total", report="device_count")
        assert runs is not None and runs >= 3
        page = requests.get(f"{base}/", timeout=10).text
        assert f'<section id="toy-device_count">{devices} devices</section>' in page
    finally:
        server.shutdown()
        app.shutdown()
    restarted = make_app(config)  # read back from the state file, before any run
    assert restarted.store.snapshot["device_count"].result == DeviceCount(devices)


def test_once_runs_a_new_kind_and_check_config_summarises_it(
    sim: Simulator, tmp_path: Path, toy_kind: DeviceCountKind, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = kind_config_file(sim, tmp_path, "1h")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert cli.main(["--config.file", str(path), "--once"]) == 0
        printed = capsysbinary.readouterr().out.decode()
        assert cli.main(["--config.file", str(path), "--check-config"]) == 0
        checked = capsysbinary.readouterr().out.decode()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    counted = sample(parse_samples(printed), "toy_devices", collection="device_count")
    assert counted is not None and counted > 0
    assert "1 report(s): all; devices counted every 3600s" in checked
