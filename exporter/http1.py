"""HTTP/1.1 framing for the web front: requests parsed from a connection's bytes, answers framed onto it,
over a plain socket or TLS. What a request means and what to answer is `web`'s business.

Strict where it matters to a small server (one Content-Length, no chunked request bodies, a bounded head
and body) and lenient where clients differ harmlessly (header names in any case, repeated headers joined).
Written here rather than taken from h11: with h11 doing the same framing, plain /metrics served 19 to 42 %
fewer requests a second at 100 series (wrk -t2 -c8, side by side in one run, two runs), about the same at
10,000 series: the per-request cost is in the framing, and a small /metrics pays it most.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from exporter.numbers import decimal_int

MAX_HEAD = 65536  # bytes of request line and headers
MAX_BODY = 65536  # bytes of a request body (only /-/reload takes one, and ignores it)
READ_SIZE = 16384  # bytes read from a connection at a time
_CHUNK = 65536  # bytes of a body encrypted at a time
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]  # names in lower case
    body: bytes = b""

    @property
    def wants_close(self) -> bool:
        """Whether the client asked for the connection to end after this answer."""
        if self.version == "HTTP/1.0":
            return True  # no keep-alive for HTTP/1.0: its clients are tools, not scrapers
        connection = self.headers.get("connection", "").lower()
        return "close" in (token.strip() for token in connection.split(","))


@dataclass(frozen=True)
class Response:
    status: int
    body: tuple[bytes, ...]
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False


def text(status: int, message: str, headers: dict[str, str] | None = None, close: bool = False) -> Response:
    return Response(status, (message.encode(),), TEXT, headers or {}, close)


class BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def parse_head(head: bytes) -> Request:
    """The request line and headers (up to the blank line); raises BadRequest with the answer to give."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise BadRequest(text(400, "Bad request line\n", close=True))
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(text(505, "Only HTTP/1.0 and HTTP/1.1 are served\n", close=True))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise BadRequest(text(400, "Bad header line\n", close=True))
        key = name.lower()
        value = value.strip()
        if key in headers:
            if key in ("content-length", "host", "authorization"):
                raise BadRequest(text(400, f"Repeated {name} header\n", close=True))
            headers[key] += ", " + value
        else:
            headers[key] = value
    if target.startswith(("http://", "https://")):  # absolute form: only the path matters here
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return Request(method, target.split("?", 1)[0], version, headers)


_MALFORMED = Request("", "", "", {})


class Channel:
    """A connection's bytes in and out, plain or TLS."""

    async def recv(self) -> bytes:
        raise NotImplementedError

    async def send(self, head: bytes, body: tuple[bytes, ...]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Framing:
    """One connection's requests, one after the other (keep-alive and pipelining), and their answers.

    Bytes are read only when no whole request is buffered, so what one connection holds is bounded by
    `MAX_HEAD` plus one read, plus a body of at most `MAX_BODY`, however much a pipelining client sends."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._buffer = bytearray()
        self._start = 0  # where the next request begins in _buffer
        self.received = 0  # bytes of the next request received so far

    @property
    def buffered(self) -> bool:
        """Whether bytes of a next request have arrived already."""
        return self._start < len(self._buffer)

    async def _more(self) -> bool:
        chunk = await self.channel.recv()
        if self._start > len(self._buffer) // 2:
            del self._buffer[:self._start]
            self._start = 0
        self._buffer += chunk
        self.received += len(chunk)
        return bool(chunk)

    async def wait(self) -> bool:
        """Wait for the first bytes of the next request; False when the client closed the connection."""
        return self.buffered or await self._more()

    async def request(self) -> tuple[Request, Response | None]:
        """A whole request (headers and body), or the answer to give at once when it is malformed (the
        connection then closes)."""
        searched = 0  # bytes after _start known to hold no blank line: each byte is searched about once
        while (end := self._buffer.find(b"\r\n\r\n", self._start + searched)) < 0:
            searched = max(0, len(self._buffer) - self._start - 3)
            if searched > MAX_HEAD:
                return _MALFORMED, text(431, "Request headers too large\n", close=True)
            if not await self._more():
                raise asyncio.IncompleteReadError(bytes(self._buffer[self._start:]), None)
        if end - self._start > MAX_HEAD:
            return _MALFORMED, text(431, "Request headers too large\n", close=True)
        try:
            request = parse_head(bytes(self._buffer[self._start:end]))
        except BadRequest as bad:
            return _MALFORMED, bad.response
        self._start = end + 4
        if "transfer-encoding" in request.headers:
            # No endpoint takes a body; a chunked one is not worth parsing to throw away.
            return request, text(411, "A request body needs Content-Length\n", close=True)
        # Strictly: int() of a 5,000-digit value raises, which would cost the client its 413.
        length = decimal_int(request.headers.get("content-length", "0"))
        if length is None or length > MAX_BODY:
            return request, text(413, "Request body too large or malformed\n", close=True)
        if (length > len(self._buffer) - self._start and request.version == "HTTP/1.1"
                and request.headers.get("expect", "").lower() == "100-continue"):
            await self.channel.send(b"HTTP/1.1 100 Continue\r\n\r\n", ())  # never to HTTP/1.0 (RFC 9110 10.1.1)
        while length > len(self._buffer) - self._start:
            if not await self._more():
                raise asyncio.IncompleteReadError(bytes(self._buffer[self._start:]), length)
        body = bytes(self._buffer[self._start:self._start + length])
        self._start += length
        self.received = len(self._buffer) - self._start  # the next request's bytes, pipelined
        return Request(request.method, request.path, request.version, request.headers, body), None

    async def answer(self, request: Request, response: Response, close: bool, headers: dict[str, str]) -> None:
        """`response` (with `headers` from the web config besides its own), its body left out for HEAD."""
        await self.channel.send(head(response, close, headers), () if request.method == "HEAD" else response.body)


_date_cache: list[Any] = [0, ""]


def _date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return str(_date_cache[1])


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def head(response: Response, close: bool, headers: dict[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {_reason(response.status)}",
        "Server: ncentral-patch-exporter",
        f"Date: {_date()}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {sum(len(part) for part in response.body)}",
        *(f"{name}: {value}" for name, value in {**headers, **response.headers}.items()),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class PlainChannel(Channel):
    """The socket itself through the loop's socket calls: a body goes out straight from the cached bytes,
    never copied into a transport's buffer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: socket.socket) -> None:
        self._loop = loop
        self._socket = connection
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # The loop's socket calls wait on a future held by their own frame; an error (a client's reset) is set on
    # that future with a traceback through that frame: a reference cycle, which would hold every frame the
    # error passes through (this connection, its SSLObject and buffers) until a full garbage collection.
    # Dropping the traceback where the error leaves the loop's call breaks the cycle.

    async def recv(self) -> bytes:
        try:
            return await self._loop.sock_recv(self._socket, READ_SIZE)
        except OSError as exc:
            exc.__traceback__ = None
            raise

    async def sendall(self, data: bytes | memoryview) -> None:
        try:
            await self._loop.sock_sendall(self._socket, data)
        except OSError as exc:
            exc.__traceback__ = None
            raise

    async def send(self, head: bytes, body: tuple[bytes, ...]) -> None:
        if sum(len(part) for part in body) <= 16384:
            await self.sendall(b"".join((head, *body)))
            return
        await self.sendall(head)
        for part in body:
            await self.sendall(part)

    def close(self) -> None:
        self._socket.close()


class TLSChannel(PlainChannel):
    """TLS through an `SSLObject` over memory BIOs, on the loop's socket calls. Nothing of TLS exists until
    the client's first bytes arrive (an idle connection costs what a plain one does), and a connection
    holds no buffer of its own: asyncio's TLS transport keeps a 256 KiB one per connection; OpenSSL
    releases its record buffers between reads (SSL_MODE_RELEASE_BUFFERS, which CPython sets)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: socket.socket, context: ssl.SSLContext) -> None:
        super().__init__(loop, connection)
        self._context = context
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None

    async def handshake(self) -> bool:
        """Wait for the client's first bytes, then do the handshake; False when it closed without a byte."""
        first = await super().recv()
        if not first:
            return False
        self._incoming.write(first)
        self._tls = tls = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    raise ConnectionResetError("closed during the TLS handshake") from None
        await self._flush()
        return True

    def san_allowed(self, allowed: tuple[str, ...]) -> bool:
        assert self._tls is not None
        sans: Any = (self._tls.getpeercert() or {}).get("subjectAltName", ())
        names = {str(value) for _, value in sans}
        return not names.isdisjoint(allowed)

    async def _fill(self) -> bool:
        data = await super().recv()
        self._incoming.write(data)
        return bool(data)

    async def _flush(self) -> None:
        if self._outgoing.pending:
            await self.sendall(self._outgoing.read())

    async def recv(self) -> bytes:
        assert self._tls is not None
        while True:
            try:
                return self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()  # e.g. a TLS 1.3 key update's answer
                if not await self._fill():
                    return b""
            except ssl.SSLZeroReturnError:  # the client's close_notify
                return b""

    async def send(self, head: bytes, body: tuple[bytes, ...]) -> None:
        assert self._tls is not None
        if sum(len(part) for part in body) <= 16384:  # one TLS record for a small answer
            self._tls.write(b"".join((head, *body)))
            await self._flush()
            return
        self._tls.write(head)
        for part in body:
            view = memoryview(part)
            for start in range(0, len(view), _CHUNK):  # so a slow reader never makes us encrypt a whole body
                self._tls.write(view[start:start + _CHUNK])
                await self._flush()
        await self._flush()
