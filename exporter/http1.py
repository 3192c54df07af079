"""HTTP/1.1 framing for the web front: requests parsed from a connection's bytes, answers framed onto it,
over a plain socket or TLS. What a request means and what to answer is `web`'s business.

Strict where it matters to a small server (one Content-Length, no chunked request bodies, a bounded head
and body) and lenient where clients differ harmlessly (header names in any case, repeated headers joined).
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

from exporter.numbers import decimal

MAX_HEAD = 65536  # bytes of request line and headers
MAX_BODY = 65536  # bytes of a request body (only /-/reload takes one, and ignores it)
_CHUNK = 256 * 1024  # written to a TLS transport at a time, so a slow reader never makes it copy a whole body
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
    """One connection's requests, one after the other (keep-alive and pipelining), and their answers."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._buffer = b""

    @property
    def buffered(self) -> bool:
        """Whether bytes of a next request have arrived already."""
        return bool(self._buffer)

    async def wait(self) -> bool:
        """Wait for the first bytes of the next request; False when the client closed the connection."""
        if not self._buffer:
            self._buffer = await self.channel.recv()
        return bool(self._buffer)

    async def request(self) -> tuple[Request, Response | None]:
        """A whole request (headers and body), or the answer to give at once when it is malformed (the
        connection then closes)."""
        buffer = self._buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                return _MALFORMED, text(431, "Request headers too large\n", close=True)
            chunk = await self.channel.recv()
            if not chunk:
                raise asyncio.IncompleteReadError(buffer, None)
            buffer += chunk
        self._buffer = b""
        if end > MAX_HEAD:
            return _MALFORMED, text(431, "Request headers too large\n", close=True)
        try:
            request = parse_head(buffer[:end])
        except BadRequest as bad:
            return _MALFORMED, bad.response
        rest = buffer[end + 4:]
        if "transfer-encoding" in request.headers:
            # No endpoint takes a body; a chunked one is not worth parsing to throw away.
            return request, text(411, "A request body needs Content-Length\n", close=True)
        # Strictly: int() of a 5,000-digit value raises, which would cost the client its 413.
        length = decimal(request.headers.get("content-length", "0"))
        if length is None or length > MAX_BODY:
            return request, text(413, "Request body too large or malformed\n", close=True)
        if length > len(rest) and request.headers.get("expect", "").lower() == "100-continue":
            await self.channel.send(b"HTTP/1.1 100 Continue\r\n\r\n", ())
        while length > len(rest):
            chunk = await self.channel.recv()
            if not chunk:
                raise asyncio.IncompleteReadError(rest, length)
            rest += chunk
        self._buffer = rest[length:]
        return Request(request.method, request.path, request.version, request.headers, rest[:length]), None

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

    async def recv(self) -> bytes:
        return await self._loop.sock_recv(self._socket, MAX_HEAD)

    async def send(self, head: bytes, body: tuple[bytes, ...]) -> None:
        if sum(len(part) for part in body) <= 16384:
            await self._loop.sock_sendall(self._socket, b"".join((head, *body)))
            return
        await self._loop.sock_sendall(self._socket, head)
        for part in body:
            await self._loop.sock_sendall(self._socket, part)

    def close(self) -> None:
        self._socket.close()


class TLSChannel(Channel):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def handshake(
        cls, loop: asyncio.AbstractEventLoop, connection: socket.socket, context: ssl.SSLContext, timeout: float
    ) -> TLSChannel:
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, connection, ssl=context, ssl_handshake_timeout=timeout
            )
        except BaseException:
            connection.close()
            raise
        return cls(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    def san_allowed(self, allowed: tuple[str, ...]) -> bool:
        sans: Any = (self._writer.get_extra_info("peercert") or {}).get("subjectAltName", ())
        names = {str(value) for _, value in sans}
        return not names.isdisjoint(allowed)

    async def recv(self) -> bytes:
        return await self._reader.read(MAX_HEAD)

    async def send(self, head: bytes, body: tuple[bytes, ...]) -> None:
        self._writer.write(head)
        for part in body:
            view = memoryview(part)
            for start in range(0, len(view), _CHUNK):  # never a whole body copied into the TLS buffer
                self._writer.write(view[start:start + _CHUNK])
                await self._writer.drain()
        await self._writer.drain()

    def close(self) -> None:
        self._writer.transport.abort()
