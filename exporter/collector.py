"""Custom collectors: metric families built afresh from the store's current snapshot, and the exporter's own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__, registry
from exporter.client import ServerInfo
from exporter.collection import Settings
from exporter.errors import REASONS
from exporter.store import Snapshot, Store


class CollectionCollector(Collector):
    """Every collection's run outcomes, and each kind's metric families from its results. A result older
    than its kind allows (a report's `max_data_age`) is left out."""

    def __init__(
        self, store: Store, collections: Callable[[], Sequence[Settings]], wall: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._collections = collections
        self._wall = wall

    def expired(self, snapshot: Snapshot) -> frozenset[str]:
        """The collections whose result is too old to publish."""
        now = self._wall()
        return frozenset(
            collection.name
            for collection in self._collections()
            if (state := snapshot.get(collection.name)) is not None
            and state.kind == collection.kind
            and registry.kind_of(collection).expired(collection, state, now)
        )

    def collect(self) -> Iterator[Metric]:
        snapshot = self._store.snapshot
        return iter(families(snapshot, self.expired(snapshot)))


def families(snapshot: Snapshot, expired: frozenset[str]) -> list[Metric]:
    """Each kind's families (in the registry's order) from its results not `expired`, then the run outcomes
    of every collection in `snapshot`."""
    published = [
        family
        for kind in registry.KINDS
        for family in kind.families(
            [(name, state) for name, state in snapshot.items() if state.kind == kind.name and name not in expired]
        )
    ]
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
    failure_reason = GaugeMetricFamily(
        "ncentral_patch_report_last_run_failure_reason",
        "1 for the reason the report's last run failed; absent after a successful run and before the first.",
        labels=["report", "reason"],
    )
    runs = CounterMetricFamily(
        "ncentral_patch_report_runs", "Report runs finished, successful or not.", labels=["report"]
    )
    failures = CounterMetricFamily(
        "ncentral_patch_report_failures", "Report runs that failed, by reason.", labels=["report", "reason"]
    )
    for name, state in snapshot.items():
        success.add_metric([name], 1.0 if state.last_run_success else 0.0)
        if not state.last_run_success and state.last_reason is not None:
            failure_reason.add_metric([name, state.last_reason], 1.0)
        if state.last_success_time is not None:
            last_success.add_metric([name], state.last_success_time)
        if state.last_duration is not None:
            duration.add_metric([name], state.last_duration)
        runs.add_metric([name], state.runs_total)
        for reason in (*REASONS, *sorted(set(state.failures) - set(REASONS))):
            failures.add_metric([name, reason], state.failures.get(reason, 0))
    return [*published, success, failure_reason, last_success, duration, runs, failures]


class ScheduleCollector(Collector):
    """Each configured collection's interval, from the config in force (a reload changes it without a run):
    what the staleness alert measures the age of a collection's data against."""

    def __init__(self, collections: Callable[[], Sequence[Settings]]) -> None:
        self._collections = collections

    def collect(self) -> Iterator[Metric]:
        interval = GaugeMetricFamily(
            "ncentral_patch_report_interval_seconds",
            "Seconds between the collection's scheduled runs (reports[].interval, customers.interval).",
            labels=["report"],
        )
        for name, seconds in self.inputs():
            interval.add_metric([name], seconds)
        return iter([interval])

    def inputs(self) -> tuple[tuple[str, float], ...]:
        """What `collect` renders: the same inputs, the same metrics."""
        return tuple((collection.name, collection.interval) for collection in self._collections())


@dataclass(frozen=True)
class ReloadStatus:
    """How the last configuration load went: its owner (`Exporter.reload`) swaps it whole."""

    successful: bool = True
    success_time: float = field(default_factory=time.time)


class ExporterCollector(Collector):
    """The exporter's own metrics: build and configuration reload status (asked of `reload_status`)."""

    def __init__(self, reload_status: Callable[[], ReloadStatus] | None = None) -> None:
        """Without `reload_status`, the status of a config loaded once, now."""
        loaded = ReloadStatus()
        self._reload_status = reload_status or (lambda: loaded)

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "ncentral_patch_exporter_build_info", "The exporter's version; always 1.", labels=["version"]
        )
        build.add_metric([__version__], 1.0)
        status = self.inputs()
        reload_ok = GaugeMetricFamily(
            "ncentral_patch_exporter_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or was refused (0).",
            value=1.0 if status.successful else 0.0,
        )
        reload_time = GaugeMetricFamily(
            "ncentral_patch_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=status.success_time,
        )
        return iter([build, reload_ok, reload_time])

    def inputs(self) -> ReloadStatus:
        """What `collect` renders: the same inputs, the same metrics."""
        return self._reload_status()


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
        server, write_failures = self.inputs()
        if server is not None:
            info.add_metric([server.version or "unknown", server.api_version or "unknown"], 1.0)
        writes = CounterMetricFamily(
            "ncentral_patch_exporter_state_write_failures",
            "State file writes that failed (see the log for why); the results stay in memory.",
            value=write_failures,
        )
        return iter([info, writes])

    def inputs(self) -> tuple[ServerInfo | None, int]:
        """What `collect` renders: the same inputs, the same metrics."""
        return self._server(), self._state_write_failures()
