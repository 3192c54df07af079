"""Wiring: config → store → one run per collection kind → scheduler, plus reload and what the web front
asks of them."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from exporter import registry
from exporter.client import ServerInfo, Sleep
from exporter.collector import (
    CollectionCollector,
    ExporterCollector,
    ReloadStatus,
    RuntimeCollector,
    ScheduleCollector,
)
from exporter.config import Config, ConfigError, log_notices
from exporter.exposition import Exposition
from exporter.live_client import ClientFactory, CollectionRun, default_client
from exporter.running_config import RunningConfig
from exporter.scheduler import Scheduler
from exporter.store import Snapshot, Store, server_identity

log = logging.getLogger(__name__)

# How long shutdown waits for the run under way to end once halted (a wait ends at once; an HTTP call
# ends by its own deadline, which the state, written meanwhile, does not need).
SHUTDOWN_GRACE = 1.0

ConfigLoader = Callable[[], Config]


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
        self.store = Store(config.collections, config.storage_path, server=server_identity(config.ncentral))
        # One run per kind, by the kind's name: it runs each of the kind's collections, one at a time.
        self.runs: dict[str, CollectionRun] = {
            kind.name: kind.run_type(self.running_config, self.store, self.stop, client_factory=client_factory,
                                     wall=wall, monotonic=monotonic, sleep=sleep)
            for kind in registry.KINDS
        }
        self.scheduler = Scheduler(self.run, lambda: self.config.collections,
                                   lambda name: self.store.snapshot.get(name))
        self.reload_status = ReloadStatus()  # the one owner: `reload` swaps it, the metrics read it
        self.meta = ExporterCollector(lambda: self.reload_status)
        self.collector = CollectionCollector(self.store, lambda: self.config.collections, wall)
        self.exposition = Exposition(self.store, self.collector, self.meta)
        self.exposition.register_runtime(RuntimeCollector(self._server, lambda: self.store.write_failures))
        self.exposition.register_runtime(ScheduleCollector(lambda: self.config.collections))
        self._reload_lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The config in force (asked of `running_config`)."""
        return self.running_config.get()

    def _server(self) -> ServerInfo | None:
        """What N-central said about itself to the first run (in the registry's order) that authenticated."""
        return next((server for run in self.runs.values() if (server := run.server) is not None), None)

    def run(self, name: str) -> bool:
        """Run collection `name` once (what the scheduler does at each interval); True on success."""
        try:
            collection = self.config.collection(name)
            return collection is not None and self.runs[collection.kind].run(name)
        finally:
            self.exposition.refresh()  # the job thread renders the new result, so no scrape waits for it

    def start(self) -> None:
        self.scheduler.start()

    def run_once(self) -> bool:
        """Run every collection once, in order; True when all succeeded."""
        return all([self.runs[collection.kind].run(collection.name) for collection in self.config.collections])

    def halt(self) -> None:
        """Stop: every run under way ends at its next wait, which ends at once, and no run starts."""
        self.stop.set()
        for run in self.runs.values():
            run.halt()

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
        self.close()
        return ended

    def close(self) -> None:
        """Close the N-central sessions (their connections); shutdown does, last."""
        for run in self.runs.values():
            run.close()

    def reload(self) -> str | None:
        """Apply a new config from the loader; returns None, or why it was refused (the old one stays)."""
        with self._reload_lock:
            if self._load_config is None:
                error = "no configuration to reload from"
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
                    fresh = self.store.reconfigure(config.collections, server=server_identity(config.ncentral))
                    self.running_config.swap(config)  # the runs ask it; a new N-central replaces their clients
                    self.scheduler.schedule([*fresh, *run_now])
                    self.reload_status = ReloadStatus(successful=True, success_time=time.time())
                    log.info("configuration reloaded", extra={
                        "collections": len(config.collections), "restarted": fresh, "run_now": run_now,
                    })
                    log_notices(config)  # what the new config normalised or looks unwise, now it is accepted
                    return None
            self.reload_status = replace(self.reload_status, successful=False)
            log.error("configuration reload refused; keeping the old one", extra={"error": error})
            return error

    def _run_now(self, old: Config, new: Config) -> list[str]:
        """Collections a reload should run at once besides those with new filters: all of them when the
        N-central settings changed (URL, token, TLS, …), and any changed one whose last run failed, so a
        fixed mistake shows at once rather than after the interval. (A run under way notices new settings
        and starts again itself, each kind's run does; one that was ending runs once more, see `Scheduler`.)"""
        if new.ncentral != old.ncentral:
            return [collection.name for collection in new.collections]
        before = {collection.name: collection for collection in old.collections}
        snapshot = self.store.snapshot
        return [
            collection.name
            for collection in new.collections
            if before.get(collection.name) not in (None, collection)
            and (state := snapshot.get(collection.name)) is not None
            and state.last_run_time is not None
            and not state.last_run_success
        ]

    def not_ready(self) -> str | None:
        """None once every collection whose kind holds readiness back (the reports) has a result to serve;
        else which have none yet."""
        snapshot: Snapshot = self.store.snapshot
        waiting = [
            collection.name
            for collection in self.config.collections
            if registry.kind_of(collection).waiting(collection, snapshot.get(collection.name))
        ]
        return f"no data yet for report(s): {', '.join(waiting)}" if waiting else None

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return self.scheduler.next_runs()

