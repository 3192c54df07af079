"""The N-central client of one collection kind, following the running config: a swap that changes the
N-central settings (URL, token, TLS, timeouts…) replaces it; and `CollectionRun`, what every collection
kind is built on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter.client import NCentralClient, ServerInfo, Sleep, interruptible_sleep
from exporter.collection import Settings
from exporter.config import Config, NCentralSettings
from exporter.errors import InternalError, UpstreamError
from exporter.running_config import RunningConfig
from exporter.store import CollectionState, Store, server_identity

# The event halts the client's waits (backoff).
ClientFactory = Callable[[NCentralSettings, threading.Event], NCentralClient]


def default_client(settings: NCentralSettings, halt: threading.Event) -> NCentralClient:
    return NCentralClient(settings, sleep=interruptible_sleep(halt))


class LiveClient:
    def __init__(self, config: RunningConfig, factory: ClientFactory = default_client) -> None:
        """Each client has its own halt event, set when a swap replaces the client (its run starts afresh
        with the new settings at once, not after its retries) and by `halt`."""
        self._running = config
        self._factory = factory
        self._lock = threading.Lock()
        self._halts: dict[NCentralClient, threading.Event] = {}
        self._client = self._new_client(config.get().ncentral)
        config.on_swap(self._swapped)

    def _swapped(self, _old: Config, _new: Config) -> None:
        self.current()  # now, not at the next run: the replaced client's waits are halted at once

    def _new_client(self, settings: NCentralSettings) -> NCentralClient:
        halt = threading.Event()
        client = self._factory(settings, halt)
        self._halts[client] = halt
        return client

    def current(self) -> tuple[Config, NCentralClient]:
        """The config in force and a client for its N-central settings. The config is read under the lock,
        so a late reader never brings back an old client."""
        with self._lock:
            config = self._running.get()
            if self._client.settings != config.ncentral:
                # Not closed: a run may be using it; it goes when that run lets go of it. Halted, so that run
                # stops its backoff and starts afresh with the new client.
                self._halts.pop(self._client).set()
                self._client = self._new_client(config.ncentral)
            return config, self._client

    def halt_of(self, client: NCentralClient) -> threading.Event | None:
        """The event that halts `client`'s waits; None once a swap has replaced it."""
        with self._lock:
            return self._halts.get(client)

    def halt(self) -> None:
        """Interrupt every client's waits at once (shutdown)."""
        with self._lock:
            for halt in self._halts.values():
                halt.set()

    @property
    def server(self) -> ServerInfo | None:
        """What the current N-central said about itself at the last authentication."""
        with self._lock:
            return self._client.server

    def close(self) -> None:
        with self._lock:
            self._client.close()


class CollectionRun:
    """What every collection kind's run is built on: the running config it asks for its settings, the store
    it records in, the stop event, the clocks, and its own N-central client (`LiveClient`). One object per
    kind runs each of the kind's collections (one at a time: the scheduler gives each kind one worker)."""

    def __init__(
        self,
        config: RunningConfig,
        store: Store,
        stop: threading.Event,
        *,
        client_factory: ClientFactory = default_client,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep | None = None,
    ) -> None:
        """`wall`, `monotonic` and `sleep` (default: a wait that halting the client ends) drive time in tests."""
        self._running = config
        self._store = store
        self._stop = stop
        self._wall = wall
        self._monotonic = monotonic
        self._given_sleep = sleep
        self._clients = LiveClient(config, client_factory)

    def run(self, name: str) -> bool:
        """Run collection `name` once; True on success. Never raises for N-central's faults."""
        raise NotImplementedError

    @property
    def server(self) -> ServerInfo | None:
        """What the current N-central said about itself at the last authentication."""
        return self._clients.server

    def halt(self) -> None:
        """Interrupt the run's waits at once (shutdown)."""
        self._clients.halt()

    def close(self) -> None:
        self._clients.close()

    @staticmethod
    def _failure(exc: Exception, logger: logging.Logger, what: str, name: str) -> UpstreamError:
        """What a run records for `exc`: N-central's failure as it is; anything else is a bug, logged with its
        traceback and recorded as `internal` (a bug must not stop the schedule or lose the run's count)."""
        if isinstance(exc, UpstreamError):
            return exc
        logger.exception(f"unexpected error in {what}", extra={"report": name})
        return InternalError(f"unexpected {type(exc).__name__} in the exporter (see the log)")

    def _replaced(self, client: NCentralClient) -> bool:
        """Whether a reload replaced `client` (changed the N-central settings) since the run took it."""
        return self._clients.halt_of(client) is None

    def _record(
        self, settings: Settings, client: NCentralClient, change: Callable[[CollectionState], CollectionState]
    ) -> bool:
        """Whether the store took the change: it refuses one from a run whose settings a reload changed or
        removed, or whose server (the one `client` talks to) is no longer the configured one."""
        return self._store.update(
            settings.name, change, fingerprint=settings.fingerprint, server=server_identity(client.settings)
        )
