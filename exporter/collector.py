"""Custom collectors: metric families built afresh from the store's current snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__, customers
from exporter.client import ServerInfo
from exporter.config import CUSTOMERS, ReportSettings
from exporter.errors import REASONS
from exporter.store import Snapshot, Store

_CACHED = "cached from the latest completed patch-comparison report"


class ReportCollector(Collector):
    """The report data and run outcomes. Data older than a report's `max_data_age` is left out."""

    def __init__(
        self, store: Store, reports: Callable[[], Sequence[ReportSettings]], wall: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._reports = reports
        self._wall = wall

    def expired(self, snapshot: Snapshot) -> frozenset[str]:
        """Reports whose last good data is older than their `max_data_age`."""
        now = self._wall()
        return frozenset(
            report.name
            for report in self._reports()
            if report.max_data_age > 0
            and (state := snapshot.get(report.name)) is not None
            and state.last_success_time is not None
            and now - state.last_success_time > report.max_data_age
        )

    def collect(self) -> Iterator[Metric]:
        snapshot = self._store.snapshot
        return iter(families(snapshot, self.expired(snapshot)))


def families(snapshot: Snapshot, expired: frozenset[str]) -> list[Metric]:
    approvals = GaugeMetricFamily(
        "ncentral_patch_approvals",
        f"Patches per device class and approval status, {_CACHED}.",
        labels=["report", "device_class", "approval_status"],
    )
    installs = GaugeMetricFamily(
        "ncentral_patch_installs",
        f"Patches per approval status, install status and patch type, {_CACHED}.",
        labels=["report", "approval_status", "install_status", "patch_type"],
    )
    success = GaugeMetricFamily(
        "ncentral_patch_report_last_run_success",
        "Whether the report's last run succeeded (1) or failed (0); 0 until a run has finished.",
        labels=["report"],
    )
    last_success = GaugeMetricFamily(
        "ncentral_patch_report_last_success_timestamp_seconds",
        "Unix time of the report's last successful run: the age of the values served.",
        labels=["report"],
    )
    duration = GaugeMetricFamily(
        "ncentral_patch_report_last_duration_seconds",
        "Seconds the last successful run took: a report's from submit to COMPLETED, the customer scan's from "
        "start to end.",
        labels=["report"],
    )
    runs = CounterMetricFamily(
        "ncentral_patch_report_runs", "Report runs finished, successful or not.", labels=["report"]
    )
    failures = CounterMetricFamily(
        "ncentral_patch_report_failures", "Report runs that failed, by reason.", labels=["report", "reason"]
    )
    for name, state in snapshot.items():
        if state.data is not None and name not in expired:
            for row in state.data.approvals:
                approvals.add_metric([name, row.device_class, row.approval_status], row.count)
            for install in state.data.installs:
                installs.add_metric(
                    [name, install.approval_status, install.install_status, install.patch_type], install.count
                )
        success.add_metric([name], 1.0 if state.last_run_success else 0.0)
        if state.last_success_time is not None:
            last_success.add_metric([name], state.last_success_time)
        if state.last_duration is not None:
            duration.add_metric([name], state.last_duration)
        runs.add_metric([name], state.runs_total)
        for reason in (*REASONS, *sorted(set(state.failures) - set(REASONS))):
            failures.add_metric([name, reason], state.failures.get(reason, 0))
    return [approvals, installs, success, last_success, duration, runs, failures,
            *customers.families(snapshot.get(CUSTOMERS))]


class ExporterCollector(Collector):
    """The exporter's own metrics: build and configuration reload status."""

    def __init__(self) -> None:
        self.reload_successful = True
        self.reload_success_time = time.time()

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "ncentral_patch_exporter_build_info", "The exporter's version; always 1.", labels=["version"]
        )
        build.add_metric([__version__], 1.0)
        reload_ok = GaugeMetricFamily(
            "ncentral_patch_exporter_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or was refused (0).",
            value=1.0 if self.reload_successful else 0.0,
        )
        reload_time = GaugeMetricFamily(
            "ncentral_patch_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=self.reload_success_time,
        )
        return iter([build, reload_ok, reload_time])


class RuntimeCollector(Collector):
    """What the exporter learnt while running: the N-central server it talks to, failed state writes."""

    def __init__(self, server: Callable[[], ServerInfo | None], state_write_failures: Callable[[], int]) -> None:
        self._server = server
        self._state_write_failures = state_write_failures

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "ncentral_server_info",
            "The N-central server as it described itself at the last authentication (server-info/extra's "
            "Deployment Product Version, server-info's API service version); always 1.",
            labels=["version", "api_version"],
        )
        server = self._server()
        if server is not None:
            info.add_metric([server.version or "unknown", server.api_version or "unknown"], 1.0)
        writes = CounterMetricFamily(
            "ncentral_patch_exporter_state_write_failures",
            "State file writes that failed (see the log for why); the results stay in memory.",
            value=self._state_write_failures(),
        )
        return iter([info, writes])
