"""The HTTP front: /metrics, /, /-/healthy, /-/ready, /-/reload; TLS and basic auth from the web config.
Routing and answers live here; the HTTP/1.1 framing (parsing requests, framing answers, plain or TLS
bytes) is `http1`.

One event loop thread owns every socket: it accepts, does the TLS handshake, reads requests and writes
answers, all without blocking. A connection costs a thread only while its request is being handled: a
request that has fully arrived goes to a small, fixed pool of worker threads, and bcrypt checks to one
thread of their own; a scrape whose collections part is rendered already is answered on the loop itself (cached
bytes and a small live part), so slow requests never queue it. So idle, slow or half-open connections cost
a file descriptor and a few KiB, never a thread, and they are bounded too:

- a request must arrive whole within `READ_TIMEOUT` of its first byte (of the connection, for the first
  request), an answer be taken within `WRITE_TIMEOUT`; one sweep a second closes the late ones (a timer per
  request would pile up cancelled timers under a pipelining flood);
- every open connection counts against `max_connections` (lowered to what `RLIMIT_NOFILE` allows, minus
  `FD_RESERVE`); beyond it the connections still waiting for a request that have sent the least in the
  longest time are closed (within their first GRACE seconds, the oldest), never the one just accepted nor
  one whose request has fully arrived; when every connection is being answered, the ones whose client has
  left an answer untaken for longer than STALL are closed, longest first (a 32nd of the cap a second), so
  clients that pipeline requests and never read cannot keep the front full until WRITE_TIMEOUT;
- one connection gets one answer per turn of the event loop, however many requests it pipelines, and its
  pipelined requests wait while requests are handled on worker threads, so a flood on one connection
  delays the others by about one request, not by the flood;
- at most `max_requests` requests are handled at once (beyond that, 503 at once, as node_exporter's
  `--web.max-requests`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter import landing
from exporter.app import Exporter
from exporter.auth import BasicAuth
from exporter.config import ConfigError
from exporter.exposition import CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE
from exporter.http1 import Framing, PlainChannel, Request, Response, TLSChannel, text
from exporter.numbers import decimal_int
from exporter.scrub import shown
from exporter.webconfig import WebConfig, file_state, load_web_config
from exporter.workers import DaemonPool

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0  # seconds to receive a request's headers and body, from its first byte
IDLE_TIMEOUT = 300.0  # seconds a keep-alive connection may wait for its next request
WRITE_TIMEOUT = 60.0  # seconds for a client to take an answer
MAX_CONNECTIONS = 1000  # open connections, the default of --web.max-connections
FD_RESERVE = 64  # file descriptors kept for the state file, N-central connections, logging and /proc reads
STALL = 5.0  # seconds an answer may go untaken before its connection may be closed to make room
GRACE = 1.0  # seconds a new connection (or a request just begun) is closed only when no older one can be
MAX_PENDING_AUTH = 100  # credentials waiting for a bcrypt check; beyond it, 503 at once
WORKERS = 4  # threads handling requests (the GIL makes more pointless); bcrypt has one more of its own
RELOAD_WAIT = 30.0  # seconds POST /-/reload waits for its reload (which goes on after it, on its own thread)
LOG_EVERY = 10.0  # seconds between two "cannot accept" lines
_GET_HEAD = ("GET", "HEAD")
_GET = ", ".join(_GET_HEAD)


def parse_listen_address(value: str) -> tuple[str, int]:
    """`[HOST]:PORT` as the Go exporters take it: `:10120`, `127.0.0.1:10120`, `[::1]:10120`."""
    host, sep, port = value.rpartition(":")
    number = decimal_int(port, max_digits=6)
    if not sep or number is None or number > 65535:
        raise ValueError(f"--web.listen-address: expected [HOST]:PORT, got {shown(value, 200)}")
    return host.strip("[]"), number


def _qualities(header: str) -> list[tuple[str, dict[str, str], float]]:
    """The entries of an Accept or Accept-Encoding header: (value, parameters, q)."""
    entries = []
    for part in header.split(","):
        value, *params = (item.strip() for item in part.split(";"))
        if not value:
            continue
        parameters = {}
        for param in params:
            name, _, setting = param.partition("=")
            parameters[name.strip().lower()] = setting.strip().strip('"')
        try:
            quality = float(parameters.pop("q", "1"))
        except ValueError:
            quality = 0.0
        entries.append((value.lower(), parameters, quality))
    return entries


def accepts_gzip(header: str) -> bool:
    """Whether `Accept-Encoding` allows gzip (`gzip;q=0` refuses it)."""
    for coding, _, quality in _qualities(header):
        if coding in ("gzip", "x-gzip"):
            return quality > 0
    return False


def wants_openmetrics(header: str) -> bool:
    """Whether `Accept` prefers OpenMetrics 1.0.0 to the text format 0.0.4. Like prometheus_client's
    `choose_encoder`, OpenMetrics without a version or of version 1.x counts (0.0.1 does not); unlike it,
    q-values count too, and a tie goes to OpenMetrics (Prometheus lists it first)."""
    best_openmetrics = best_text = 0.0
    for media, parameters, quality in _qualities(header):
        if media == "application/openmetrics-text":
            if parameters.get("version", "1.0.0").split(".")[0] == "1":
                best_openmetrics = max(best_openmetrics, quality)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, quality)
    return best_openmetrics > 0 and best_openmetrics >= best_text


@dataclass(frozen=True)
class _Settings:
    """What the web config decides, swapped whole when the file (or a file it names) changes."""

    config: WebConfig
    auth: BasicAuth
    state: tuple[object, ...]


@dataclass(eq=False, slots=True)
class _Connection:
    """What the front knows of one open connection: when it is closed unless it gets on, and what it sent."""

    deadline: float  # the sweep closes the connection once the loop's clock passes this
    since: float  # when it began waiting for its current request
    task: asyncio.Task[None] | None = None
    framing: Framing | None = None
    answering: float | None = None  # when writing its current answer began; None when not writing one

    def rank(self, now: float) -> tuple[bool, float, float]:
        """Lowest first to be closed to make room: past its grace, the fewest bytes a second, the oldest.
        Within its grace a connection's rate says nothing yet (a scrape accepted before its request arrived
        has sent 0 bytes), so those go oldest first: a new connection gets as long as any to send its
        request."""
        age = now - self.since
        if age < GRACE:
            return True, 0.0, self.since
        received = self.framing.received if self.framing is not None else 0
        return False, received / age, self.since

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


@dataclass
class _Throttled:
    """A warning logged at most once per LOG_EVERY seconds, with how many times it happened since."""

    message: str
    _next: float = 0.0
    _times: int = field(default=0)

    def __call__(self, now: float, **extra: object) -> None:
        self._times += 1
        if now >= self._next:
            log.warning(self.message, extra={**extra, "times": self._times})
            self._times = 0
            self._next = now + LOG_EVERY


def connection_cap(wanted: int) -> int:
    """At most `wanted` connections, and FD_RESERVE file descriptors spare beside them. The soft
    RLIMIT_NOFILE is raised towards the hard one first, as the Go runtime does at start; when that is still
    too low, the cap is lowered to fit (systemd's default soft limit is 1,024)."""
    try:
        import resource
    except ImportError:  # Windows: sockets are handles there, bounded by no descriptor limit
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    cap = max(soft - FD_RESERVE, soft // 2)
    log.warning("the open-file limit allows fewer connections than --web.max-connections",
                extra={"max_connections": cap, "wanted": wanted, "rlimit_nofile": soft})
    return cap


class WebServer:
    reload_wait: float = RELOAD_WAIT  # seconds POST /-/reload waits for its reload; shorter only in tests

    def __init__(
        self,
        app: Exporter,
        address: tuple[str, int],
        telemetry_path: str,
        web_config: WebConfig,
        *,
        web_config_file: str | None = None,
        max_requests: int = 40,
        max_connections: int = MAX_CONNECTIONS,
        demo: bool = False,
    ) -> None:
        """`web_config` is what `web_config_file` held at start; the file is read again when it or a file
        it names changes. `max_requests` 0 means no limit."""
        self.app = app
        self.telemetry_path = telemetry_path
        # The methods each path takes (/-/healthy is answered before auth, on its own).
        self._allowed: dict[str, tuple[str, ...]] = {
            telemetry_path: _GET_HEAD, "/": _GET_HEAD, "/-/ready": _GET_HEAD, "/-/reload": ("POST",),
        }
        self.max_requests = max_requests
        self.demo = demo
        self._web_config_file = web_config_file
        self._settings = _Settings(web_config, BasicAuth(web_config.users), self._file_state(web_config))
        self._failed_state: tuple[object, ...] | None = None
        self._socket = _listen(address)
        self._loop = asyncio.new_event_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="web")
        self._bcrypt = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="web-bcrypt")
        self._reloader = DaemonPool(1, "web-reload")
        self._reloading: asyncio.Future[str | None] | None = None
        self._in_flight = 0
        self._drained = asyncio.Event()  # set while no request is being handled on a worker thread
        self._drained.set()
        self._pending_auth = 0
        self.max_connections = connection_cap(max_connections)
        self._connections: set[_Connection] = set()
        self._waiting: set[_Connection] = set()  # those waiting for (or receiving) a request: may be closed
        self._room = asyncio.Event()
        self._cannot_accept = _Throttled("cannot accept a connection")
        self._full = _Throttled("connection limit reached, every connection being answered; accepting again "
                                "once one ends or one left its answer untaken too long is closed")
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._landing = landing.PageCache()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def web_config(self) -> WebConfig:
        return self._settings.config

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._bcrypt.shutdown(wait=False, cancel_futures=True)
        self._reloader.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    # --- the event loop thread ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(_exception_handler)
        self._tasks.update((self._loop.create_task(self._accept()), self._loop.create_task(self._sweep())))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _close(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self) -> None:
        while True:
            while len(self._connections) >= self.max_connections and not self._waiting:
                self._full(self._loop.time(), max_connections=self.max_connections)
                self._room.clear()
                await self._room.wait()
            try:
                connection, peer = await self._loop.sock_accept(self._socket)
            except OSError as exc:  # out of file descriptors, most likely: let some connections end first
                self._cannot_accept(self._loop.time(), error=str(exc))
                await asyncio.sleep(0.1)
                continue
            self._admit(connection, str(peer[0]))
            del connection  # this frame lives on: what it holds would outlive the connection
            await asyncio.sleep(0)  # the new connection reads what it was sent before the next accept

    def _admit(self, connection: socket.socket, client: str) -> None:
        if len(self._connections) >= self.max_connections:  # room is made among the others, never by it
            self._make_room(len(self._connections) + 1 - self.max_connections)
        now = self._loop.time()
        record = _Connection(deadline=now + READ_TIMEOUT, since=now)
        record.task = self._loop.create_task(self._connection(connection, client, record))
        self._connections.add(record)
        self._waiting.add(record)

    def _make_room(self, excess: int) -> None:
        """Close the waiting connections that sent the least in the longest time: `excess` of them, or a
        32nd of the waiting ones if more, so choosing costs a pass over them per 32 accepts, not per accept."""
        now = self._loop.time()
        count = min(len(self._waiting), max(excess, len(self._waiting) // 32))
        for victim in heapq.nsmallest(count, self._waiting, key=lambda record: record.rank(now)):
            self._forget(victim)
            victim.close()

    def _forget(self, record: _Connection) -> None:
        self._connections.discard(record)
        self._waiting.discard(record)
        self._room.set()

    async def _sweep(self) -> None:
        """Close the connections past their deadline: one pass a second (or four per READ_TIMEOUT, when
        shorter), in place of a timer per request."""
        while True:
            await asyncio.sleep(min(1.0, READ_TIMEOUT / 4))
            now = self._loop.time()
            for record in [record for record in self._connections if record.deadline <= now]:
                self._forget(record)
                record.close()
            if len(self._connections) >= self.max_connections and not self._waiting:
                self._close_stalled(now)

    def _close_stalled(self, now: float) -> None:
        """The front is full of connections being answered: close those whose answer has gone untaken
        longest, beyond STALL, at most a 32nd of the cap per sweep (a scrape answered on a slow link is never
        closed while the front has room)."""
        stalled = [record for record in self._connections
                   if record.answering is not None and now - record.answering >= STALL]
        for record in heapq.nsmallest(max(1, self.max_connections // 32), stalled,
                                      key=lambda record: record.answering or now):
            self._forget(record)
            record.close()

    def _current(self) -> _Settings:
        """The settings, re-read first if the web config file or a certificate, key or CA file it names
        changed (exporter-toolkit re-reads on every connection too); a broken new file keeps the old ones."""
        settings = self._settings
        if self._web_config_file is None:
            return settings
        state = self._file_state(settings.config)
        if state == settings.state or state == self._failed_state:
            return settings
        try:
            config = load_web_config(self._web_config_file)
        except ConfigError as exc:
            self._failed_state = state
            log.error("web config reload failed; keeping the old settings", extra={"error": str(exc)})
            return settings
        auth = settings.auth if config.users == settings.config.users else BasicAuth(config.users)
        self._settings = _Settings(config, auth, self._file_state(config))
        self._failed_state = None
        log.info("web config reloaded", extra={"path": self._web_config_file, "tls": config.tls is not None})
        return self._settings

    def _file_state(self, config: WebConfig) -> tuple[object, ...]:
        if self._web_config_file is None:
            return ()
        return file_state((self._web_config_file, *config.files))

    async def _connection(self, connection: socket.socket, client: str, record: _Connection) -> None:
        channel: PlainChannel | None = None
        try:
            settings = self._current()
            if settings.config.tls is None:
                channel = PlainChannel(self._loop, connection)
            else:
                channel = tls = TLSChannel(self._loop, connection, settings.config.tls)
                if not await tls.handshake():
                    return
                if settings.config.allowed_sans and not tls.san_allowed(settings.config.allowed_sans):
                    log.info("client certificate SAN not allowed", extra={"client": client})
                    return
            record.framing = Framing(channel)
            await self._serve(record.framing, record)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("client connection ended", extra={"client": client, "error": repr(exc)})
        except asyncio.CancelledError:
            pass  # shut down, late, or closed to make room
        except Exception:
            log.error("error while serving a connection", exc_info=True, extra={"client": client})
        finally:
            self._forget(record)
            if channel is not None:
                channel.close()
            else:
                connection.close()

    async def _serve(self, framing: Framing, record: _Connection) -> None:
        """Requests one after the other on one connection (HTTP/1.1 keep-alive and pipelining)."""
        while True:
            if not framing.buffered:
                # The first request must come within READ_TIMEOUT of the connection; a keep-alive connection
                # may idle for IDLE_TIMEOUT, then has READ_TIMEOUT from the first byte of its next request.
                if not await framing.wait():
                    return
                record.deadline = min(record.deadline, self._loop.time() + READ_TIMEOUT)
            request, early = await framing.request()
            self._waiting.discard(record)  # its request has arrived: never closed to make room
            record.deadline = math.inf
            settings = self._current()  # basic auth and headers follow the file per request, as in exporter-toolkit
            response = early or await self._respond(request, settings)
            close = response.close or request.wants_close or bool(request.body)
            record.answering = self._loop.time()
            record.deadline = record.answering + WRITE_TIMEOUT
            await framing.answer(request, response, close, settings.config.headers)
            record.answering = None
            if close:
                return
            await asyncio.sleep(0)  # one answer per turn: the other connections go before the next request
            if framing.buffered and self._in_flight:
                # A pipelined request also waits for those being handled on worker threads: they need the GIL
                # this loop would otherwise hold, and would get it only every switch interval (5 ms).
                await self._drained.wait()
            now = self._loop.time()
            record.since = now
            record.deadline = now + (READ_TIMEOUT if framing.buffered else IDLE_TIMEOUT)
            self._waiting.add(record)
            self._room.set()  # it may be closed to make room again

    async def _respond(self, request: Request, settings: _Settings) -> Response:
        allowed = self._allowed.get(request.path)
        if request.path == "/-/healthy":
            if request.method not in _GET_HEAD:
                return text(405, "Method not allowed\n", {"Allow": _GET})
            return text(200, "Healthy\n")
        authorised = await self._authorised(settings.auth, request) if settings.auth.enabled else True
        if authorised is None:
            return text(503, "Too many authentication checks in progress, try again later.\n")
        if not authorised:
            return text(401, "Unauthorized\n", {"WWW-Authenticate": 'Basic realm="ncentral-patch-exporter"'})
        if allowed is None:
            return text(404, "Not found\n")
        if request.method not in allowed:
            hint = "Use POST to reload\n" if request.path == "/-/reload" else "Method not allowed\n"
            return text(405, hint, {"Allow": ", ".join(allowed)})
        if request.path == "/-/reload":
            return await self._reload()
        if request.path == self.telemetry_path:
            # Cached bytes, and a live part rendered only when it changed: answered here, as that costs less
            # than handing the request to a worker thread and the answer back.
            answer = self._metrics(request, self.app.exposition.rendered_parts)
            if answer is not None:
                return answer
        if self.max_requests and self._in_flight >= self.max_requests:
            return text(503, f"Limit of concurrent requests reached ({self.max_requests}), try again later.\n")
        self._in_flight += 1
        self._drained.clear()
        try:
            return await self._loop.run_in_executor(self._pool, self._handle, request)
        except Exception:
            log.error("error while handling a request", exc_info=True, extra={"path": request.path})
            return text(500, "Internal server error\n", close=True)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._drained.set()

    async def _reload(self) -> Response:
        """A reload runs on a thread of its own, never a web worker's, so a slow one cannot hold scrapes
        back; one at a time: another asked for meanwhile is refused, not queued."""
        if self._reloading is not None and not self._reloading.done():
            return text(503, "A reload is already in progress, try again later.\n")
        self._reloading = self._loop.run_in_executor(self._reloader, self.app.reload)
        try:
            error = await asyncio.wait_for(asyncio.shield(self._reloading), self.reload_wait)
        except TimeoutError:
            return text(503, f"The reload is still running after {self.reload_wait:g}s; see the log for its "
                        "outcome.\n")
        return text(200, "Reloaded\n") if error is None else text(400, f"Reload refused: {error}\n")

    async def _authorised(self, auth: BasicAuth, request: Request) -> bool | None:
        """Whether the credentials are right; None when too many checks wait for bcrypt already. A pair
        verified before is answered from the cache at once, whatever waits for bcrypt."""
        pair = auth.credentials(request.headers.get("authorization"))
        if pair is None:
            return False
        if auth.cached(*pair):
            return True
        if self._pending_auth >= MAX_PENDING_AUTH:
            return None
        self._pending_auth += 1
        try:
            return await self._loop.run_in_executor(self._bcrypt, auth.verify, *pair)
        finally:
            self._pending_auth -= 1

    # --- worker threads ---------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        """A request that has fully arrived, authorised, with the right method for a known path (not /-/reload)."""
        app = self.app
        if request.path == self.telemetry_path:
            answer = self._metrics(request, app.exposition.render_parts)
            assert answer is not None
            return answer
        if request.path == "/":
            page = self._landing.page(
                app.config, app.store.snapshot, app.next_runs(), self.telemetry_path, self.demo, time.time()
            )
            return Response(200, (page,), "text/html; charset=utf-8")
        reason = app.not_ready()  # /-/ready
        return text(200, "Ready\n") if reason is None else text(503, f"Not ready: {reason}\n")

    @staticmethod
    def _metrics(request: Request, parts_of: Callable[..., tuple[bytes, bytes] | None]) -> Response | None:
        """The /metrics answer in the format and encoding the request asks for, from `parts_of` (the
        exposition's `render_parts`, or `rendered_parts`: None when the collections part is still to be rendered)."""
        gzipped = accepts_gzip(request.headers.get("accept-encoding", ""))
        openmetrics = wants_openmetrics(request.headers.get("accept", ""))
        parts = parts_of(gzipped=gzipped, openmetrics=openmetrics)
        if parts is None:
            return None
        headers = {"Vary": "Accept-Encoding, Accept"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return Response(200, parts, OPENMETRICS_CONTENT_TYPE if openmetrics else CONTENT_TYPE, headers)


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # A client that hangs up or fails its TLS handshake is not worth more than a debug line; anything else
    # goes through our own logger (a traceback on stderr would also break --log.format json).
    exc = context.get("exception")
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError, ssl.SSLError among them
        log.debug("client connection error", extra={"error": repr(exc)})
    else:
        log.error("web front error: %s", context.get("message"), exc_info=exc)


def _listen(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET
    if not host:
        # Like Go's ":PORT": every address, IPv6 and IPv4 where the host has both.
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
        host = "::" if socket.has_ipv6 else "0.0.0.0"  # noqa: S104 - the operator asked for all addresses
    elif ":" in host:
        family = socket.AF_INET6
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without it the
    # last segment of every answer waits for the client's delayed ACK (~40 ms on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Restart at once despite connections in TIME_WAIT. Not where SO_EXCLUSIVEADDRUSE exists (Windows):
        # there SO_REUSEADDR would let another process bind the same port and take its connections.
        if not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock

