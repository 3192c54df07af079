"""HTTP calls that end by a wall-clock deadline, status line, headers and body included.

`requests`' timeout bounds each socket read, so a server that sends its status line and then one header
byte a second holds a call for as long as it likes. A session with `DeadlineAdapter` mounted reads every
answer given inside `call_deadline(...)` through `_DeadlineReader`, which lowers the socket's timeout before
each read to the time left before the call's deadline; connecting and a TLS handshake get only the time
left too. It reads through the socket object, so TLS is covered (an SSLSocket's read honours its timeout
for the whole read), needs no thread, and leaves keep-alive and pooling as they were. `read_body_until`
reads the body by the same deadline, chunk by chunk, within a size cap.

Built on urllib3 2.x (`HTTPConnection._new_conn`, `response_class`, `HTTPResponse.read1`); pyproject.toml
pins that major version.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions


class BodyTooSlow(Exception):
    """The answer's body did not arrive in full before the call's deadline."""

    def __init__(self, status: int, received: int) -> None:
        super().__init__(status, received)
        self.status = status
        self.received = received


class CallClock:
    """The wall-clock deadline (monotonic) of one call, and how many bytes of its answers' status lines and
    headers (and bodies) have arrived so far."""

    def __init__(self, deadline: float, monotonic: Callable[[], float]) -> None:
        self.deadline = deadline
        self.monotonic = monotonic
        self.received = 0


_CALL_CLOCK: contextvars.ContextVar[CallClock | None] = contextvars.ContextVar("ncentral_call_clock", default=None)


@contextlib.contextmanager
def call_deadline(deadline: float, monotonic: Callable[[], float] = time.monotonic) -> Iterator[CallClock]:
    """The calls made inside (on this thread, through a `DeadlineAdapter`) end by `deadline` (monotonic)."""
    clock = CallClock(deadline, monotonic)
    bound = _CALL_CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CALL_CLOCK.reset(bound)


def read_body_until(
    response: requests.Response, cap: int, deadline: float, monotonic: Callable[[], float] = time.monotonic
) -> bytearray | None:
    """The (decoded) body of a streamed response, read as it arrives; None once it exceeds `cap` bytes.
    Raises BodyTooSlow at `deadline` (monotonic), however slowly the bytes keep dripping in: inside
    `call_deadline` each read is bounded by the time left, and the deadline is checked between reads."""
    buffer = bytearray()
    while True:
        if deadline - monotonic() <= 0:
            raise BodyTooSlow(response.status_code, len(buffer))
        try:
            chunk = response.raw.read1(65536, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise BodyTooSlow(response.status_code, len(buffer)) from None
        except urllib3.exceptions.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from None
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(exc) from None
        if not chunk:
            return buffer  # not copied into a bytes: json.loads reads a bytearray as it is
        if len(buffer) + len(chunk) > cap:
            return None
        buffer += chunk


class _DeadlineReader(io.RawIOBase):
    """The socket file of one response, each read bounded by the time left before the call's deadline."""

    def __init__(self, inner: Any, sock: Any, clock: CallClock) -> None:
        super().__init__()
        self._inner = inner  # the socket's own SocketIO: it keeps the socket open while the response reads
        self._sock = sock
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        clock = self._clock
        remaining = clock.deadline - clock.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"answer not complete by the call's deadline ({clock.received} bytes received)")
        before = self._sock.gettimeout()
        self._sock.settimeout(remaining if before is None else min(before, remaining))
        try:
            count: int | None = self._inner.readinto(buffer)
        finally:
            with contextlib.suppress(OSError):
                self._sock.settimeout(before)
        clock.received += count or 0
        return count

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading its status line, headers and body through a `_DeadlineReader` when
    it belongs to a call with a deadline."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        clock = _CALL_CLOCK.get()
        if clock is not None and isinstance(self.fp, io.BufferedReader):
            inner = self.fp.detach()  # nothing is buffered yet: the status line is read by begin()
            self.fp = io.BufferedReader(_DeadlineReader(inner, sock, clock))


def _connect_by_deadline(connection: urllib3.connection.HTTPConnection, connect: Callable[[], Any]) -> Any:
    """`connect()` (urllib3's _new_conn) bounded by the time left before the call's deadline; the new socket's
    timeout lowered to what is left after it, so a TLS handshake that drips in ends by the deadline too."""
    clock = _CALL_CLOCK.get()
    if clock is None:
        return connect()
    connection.timeout = max(0.01, clock.deadline - clock.monotonic())
    sock = connect()
    with contextlib.suppress(OSError):
        sock.settimeout(max(0.01, clock.deadline - clock.monotonic()))
    return sock


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _DeadlineResponse

    def _new_conn(self) -> Any:
        return _connect_by_deadline(self, super()._new_conn)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _DeadlineResponse

    def _new_conn(self) -> Any:
        return _connect_by_deadline(self, super()._new_conn)


class _HTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections whose answers are read by the call's deadline (direct or through
    an HTTP proxy; a SOCKS proxy keeps its own connections)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager
