"""Wiring: config → store → runner → scheduler, plus reload and what the web front asks of them."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from exporter.client import Sleep
from exporter.collector import ExporterCollector, ReportCollector, RuntimeCollector
from exporter.config import (
    Config,
    ConfigError,
    CustomerSettings,
    ReportSettings,
    log_notices,
    server_identity,
)
from exporter.customers import CustomerScan
from exporter.exposition import Exposition
from exporter.live_client import ClientFactory, default_client
from exporter.runner import Runner
from exporter.running_config import RunningConfig
from exporter.scheduler import ReportScheduler
from exporter.store import Snapshot, Store

log = logging.getLogger(__name__)

# How long shutdown waits for the run under way to end once halted (a wait ends at once; an HTTP call
# ends by its own deadline, which the state, written meanwhile, does not need).
SHUTDOWN_GRACE = 1.0

ConfigLoader = Callable[[], Config]


def collections(config: Config) -> tuple[ReportSettings | CustomerSettings, ...]:
    """What the store keeps and the scheduler runs: every report, and the customer scan when configured."""
    return (*config.reports, *((config.customers,) if config.customers is not None else ()))


class Exporter:
    def __init__(
        self,
        config: Config,
        load_config: ConfigLoader | None = None,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep | None = None,
        stop: threading.Event | None = None,
        client_factory: ClientFactory = default_client,
    ) -> None:
        """`wall`, `monotonic` and `sleep` (default: one that `stop` interrupts) drive time in tests;
        `client_factory` makes the N-central clients."""
        self.running_config = RunningConfig(config)  # the one owner of the config; the others ask it
        self._load_config = load_config
        self.stop = stop or threading.Event()
        self.store = Store(collections(config), config.storage_path, server=server_identity(config.ncentral))
        self.runner = Runner(self.running_config, self.store, self.stop, client_factory=client_factory,
                             wall=wall, monotonic=monotonic, sleep=sleep)
        self.customer_scan = CustomerScan(self.running_config, self.store, self.stop, client_factory=client_factory,
                                          wall=wall, monotonic=monotonic)
        self.scheduler = ReportScheduler(self._run, lambda: collections(self.config))
        self.meta = ExporterCollector()
        self.reports = ReportCollector(self.store, lambda: self.config.reports, wall)
        self.exposition = Exposition(self.store, self.reports, self.meta)
        self.exposition.register_runtime(
            RuntimeCollector(lambda: self.runner.server, lambda: self.store.write_failures)
        )
        self._reload_lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The config in force (asked of `running_config`)."""
        return self.running_config.get()

    def _run(self, name: str) -> bool:
        try:
            # By the collection's kind, not its name: a report may be named "customers" when the scan is off.
            collection = next((c for c in collections(self.config) if c.name == name), None)
            if isinstance(collection, CustomerSettings):
                return self.customer_scan.run()
            return self.runner.run(name)
        finally:
            self.exposition.refresh()  # the job thread renders the new result, so no scrape waits for it

    def start(self) -> None:
        self.scheduler.start()

    def run_once(self) -> bool:
        """Run every report once, in order, then the customer scan; True when all succeeded."""
        config = self.config
        return all([self.runner.run(report.name) for report in config.reports]
                   + ([self.customer_scan.run()] if config.customers is not None else []))

    def halt(self) -> None:
        """Stop: every run under way ends at its next wait, which ends at once, and no run starts."""
        self.stop.set()
        self.runner.halt()
        self.customer_scan.halt()

    def shutdown(self, grace: float = SHUTDOWN_GRACE) -> bool:
        """Start no more runs, interrupt any wait of the one under way and give it up to `grace` seconds to
        end, then write the state and release its file. True if no run was left inside an HTTP call."""
        self.scheduler.shutdown()
        self.halt()
        ended = self.scheduler.join(grace)
        if not ended:
            log.warning("a run is still inside an HTTP call to N-central; not waiting for it",
                        extra={"grace_seconds": grace})
        self.store.save()
        self.store.close()  # releases the state file's lock: nothing is written after this
        return ended

    def reload(self) -> str | None:
        """Apply a new config from the loader; returns None, or why it was refused (the old one stays)."""
        with self._reload_lock:
            if self._load_config is None:
                error = "no config file to reload (demo mode)"
            else:
                try:
                    config = self._load_config()
                except ConfigError as exc:
                    error = str(exc)
                except Exception as exc:  # a reload must never take the running exporter down
                    log.exception("unexpected error while loading the configuration")
                    error = f"unexpected {type(exc).__name__} while loading the configuration"
                else:
                    run_now = self._run_now(self.config, config)
                    fresh = self.store.reconfigure(collections(config), server=server_identity(config.ncentral))
                    self.running_config.swap(config)  # the runs ask it; a new N-central replaces their clients
                    self.scheduler.schedule([*fresh, *run_now])
                    self.meta.reload_successful = True
                    self.meta.reload_success_time = time.time()
                    log.info("configuration reloaded", extra={
                        "reports": len(config.reports), "restarted": fresh, "run_now": run_now,
                    })
                    log_notices(config)  # what the new config normalised or looks unwise, now it is accepted
                    return None
            self.meta.reload_successful = False
            log.error("configuration reload refused; keeping the old one", extra={"error": error})
            return error

    def _run_now(self, old: Config, new: Config) -> list[str]:
        """Collections a reload should run at once besides those with new filters: all of them when the
        N-central settings changed (URL, token, TLS, …), and any changed one whose last run failed, so a
        fixed mistake shows at once rather than after the interval. (The scheduler skips a collection whose
        job is running; a report run itself starts again with the new settings, see `Runner.run`.)"""
        if new.ncentral != old.ncentral:
            return [collection.name for collection in collections(new)]
        before = {collection.name: collection for collection in collections(old)}
        snapshot = self.store.snapshot
        return [
            collection.name
            for collection in collections(new)
            if before.get(collection.name) not in (None, collection)
            and (state := snapshot.get(collection.name)) is not None
            and state.last_run_time is not None
            and not state.last_run_success
        ]

    def not_ready(self) -> str | None:
        """None once every report has data to serve; else which have none yet."""
        snapshot: Snapshot = self.store.snapshot
        waiting = [
            report.name
            for report in self.config.reports
            if (state := snapshot.get(report.name)) is None or state.data is None
        ]
        return f"no data yet for report(s): {', '.join(waiting)}" if waiting else None

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return self.scheduler.next_runs()

