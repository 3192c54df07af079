"""The simulator as tests, benchmarks and `--demo` use it: the simulated N-central's state and knobs,
served over HTTP (or HTTPS, given a certificate) on loopback between `start()` and `stop()`."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable

from exporter.simulator.data import DEFAULT_VERSION, DEMO_JWT
from exporter.simulator.front import Server
from exporter.simulator.state import State


class Simulator(State):
    """Start with `start()` (or as a context manager); `url` is its base URL."""

    def __init__(
        self,
        *,
        jwt: str = DEMO_JWT,
        host: str = "127.0.0.1",
        port: int = 0,
        generation_time: float = 0.0,
        access_expiry: int = 3600,
        refresh_expiry: int = 90000,
        clock: Callable[[], float] = time.monotonic,
        version: str = DEFAULT_VERSION,
        tls: tuple[str, str] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`version` is the N-central release it claims; before 2025.4 it has no patch reports API (404).
        `tls`: the paths of a certificate and its key, to serve HTTPS. `wall`: the server's time of day
        (devices' check-ins are served relative to it)."""
        super().__init__(jwt=jwt, generation_time=generation_time, access_expiry=access_expiry,
                         refresh_expiry=refresh_expiry, clock=clock, version=version, wall=wall)
        self._host = host
        self._port = port
        self._server: Server | None = None
        self._tls = tls

    def start(self) -> Simulator:
        self._server = Server((self._host, self._port), self)
        self._port = self._server.server_address[1]
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ncentral-simulator", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening; `start()` again listens on the same port (connections are refused meanwhile)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port
