"""The running configuration's one owner: the runner, the customer scan and the scheduler ask it; a
reload swaps it once."""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.config import Config

# Told (old, new) right after a swap, in the swapping thread: for what follows from the config but is
# not asked for on each use, such as halting a client whose N-central settings went.
Listener = Callable[[Config, Config], None]


class RunningConfig:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._swap_lock = threading.Lock()
        self._listeners: list[Listener] = []

    def get(self) -> Config:
        """The config in force now; one value, so a caller that reads it once sees one consistent config."""
        return self._config

    def on_swap(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def swap(self, config: Config) -> Config:
        """Put `config` in force and tell the listeners; returns the one it replaced."""
        with self._swap_lock:
            old, self._config = self._config, config
            for listener in self._listeners:
                listener(old, config)
        return old
