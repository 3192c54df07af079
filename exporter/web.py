"""The HTTP front: /metrics, /, /-/healthy, /-/ready, /-/reload; TLS and basic auth from the web config."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter import landing
from exporter.app import Exporter
from exporter.exposition import CONTENT_TYPE
from exporter.webconfig import BasicAuth, WebConfig

log = logging.getLogger(__name__)


def parse_listen_address(value: str) -> tuple[str, int]:
    """`[HOST]:PORT` as the Go exporters take it: `:10120`, `127.0.0.1:10120`, `[::1]:10120`."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: expected [HOST]:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def accepts_gzip(header: str) -> bool:
    """Whether `Accept-Encoding` allows gzip (`gzip;q=0` refuses it)."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            quality = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        tls: ssl.SSLContext | None,
        allowed_sans: tuple[str, ...] = (),
    ) -> None:
        host, port = address
        self.tls = tls
        self.allowed_sans = allowed_sans
        if not host:
            # Like Go's ":PORT": every address, IPv6 and IPv4 where the host has both.
            self.address_family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
            host = "::" if socket.has_ipv6 else "0.0.0.0"  # noqa: S104 - the operator asked for all addresses
        elif ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, so a slow client cannot stall accept().
        if self.tls is not None:
            try:
                request.settimeout(10)
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake failed", extra={"client": client_address[0], "error": str(exc)})
                return
            if self.allowed_sans and not self._san_allowed(request):
                log.info("client certificate SAN not allowed", extra={"client": client_address[0]})
                request.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or sends nonsense is not worth a traceback on stderr (which would also
        # break --log.format json); a bug in a handler is, through our own logger.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | ssl.SSLError):
            log.debug("client connection error", extra={"client": client_address[0], "error": repr(exc)})
        else:
            log.error("error while handling a request", exc_info=True, extra={"client": client_address[0]})

    def _san_allowed(self, connection: ssl.SSLSocket) -> bool:
        sans: Any = (connection.getpeercert() or {}).get("subjectAltName", ())
        names = {str(value) for _, value in sans}
        return not names.isdisjoint(self.allowed_sans)


class WebServer:
    def __init__(
        self, app: Exporter, address: tuple[str, int], telemetry_path: str, web_config: WebConfig
    ) -> None:
        self.app = app
        self.telemetry_path = telemetry_path
        self.auth = BasicAuth(web_config.users)
        self.extra_headers = web_config.headers
        web = self

        class Handler(_Handler):
            server_web = web

        self._server = _Server(address, Handler, web_config.tls, web_config.allowed_sans)
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_web: WebServer
    protocol_version = "HTTP/1.1"
    server_version = "ncentral-patch-exporter"
    timeout = 120  # idle keep-alive connections do not hold a thread for ever
    # TCP_NODELAY: headers and body are two writes, and without it the body's last segment waits for the
    # client's delayed ACK (~40 ms on Linux): every response, on a keep-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"client": self.client_address[0], "line": format % args})

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        web = self.server_web
        path = self.path.split("?", 1)[0]
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0") != "0":
            # No endpoint needs a request body; one left unread would be parsed as the next request on
            # this connection, so the connection ends with this answer.
            self.close_connection = True
        if path == "/-/healthy":
            self._send(200, b"Healthy\n", "text/plain; charset=utf-8", method)
            return
        if not web.auth.check(self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8", method,
                       {"WWW-Authenticate": 'Basic realm="ncentral-patch-exporter"'})
            return
        if method == "POST" and path != "/-/reload":
            self._send(405, b"Method not allowed\n", "text/plain; charset=utf-8", method, {"Allow": "GET, HEAD"})
        elif path == web.telemetry_path:
            self._metrics(method)
        elif path == "/":
            page = landing.render(
                web.app.config.reports, web.app.store.snapshot, web.app.next_runs(), web.telemetry_path, time.time()
            )
            self._send(200, page, "text/html; charset=utf-8", method)
        elif path == "/-/ready":
            reason = web.app.not_ready()
            if reason is None:
                self._send(200, b"Ready\n", "text/plain; charset=utf-8", method)
            else:
                self._send(503, f"Not ready: {reason}\n".encode(), "text/plain; charset=utf-8", method)
        elif path == "/-/reload":
            if method != "POST":
                self._send(405, b"Use POST to reload\n", "text/plain; charset=utf-8", method, {"Allow": "POST"})
                return
            if not self._drain_body():
                self._send(413, b"Request body too large or malformed\n", "text/plain; charset=utf-8", method)
                return
            error = web.app.reload()
            if error is None:
                self._send(200, b"Reloaded\n", "text/plain; charset=utf-8", method)
            else:
                self._send(400, f"Reload refused: {error}\n".encode(), "text/plain; charset=utf-8", method)
        else:
            self._send(404, b"Not found\n", "text/plain; charset=utf-8", method)

    def _metrics(self, method: str) -> None:
        gzipped = accepts_gzip(self.headers.get("Accept-Encoding", ""))
        parts = self.server_web.app.exposition.render_parts(gzipped=gzipped)
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzipped else {}
        self._send(200, parts, CONTENT_TYPE, method, headers)

    def _drain_body(self) -> bool:
        """Read the (ignored) request body of a reload; False if it is malformed or too large."""
        length = self.headers.get("Content-Length") or "0"
        if not (length.isascii() and length.isdecimal()) or int(length) > 65536:
            return False
        self.rfile.read(int(length))
        return True

    def _send(
        self,
        status: int,
        body: bytes | tuple[bytes, ...],
        content_type: str,
        method: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = (body,) if isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(part) for part in parts)))
        for name, value in {**self.server_web.extra_headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            for part in parts:
                self.wfile.write(part)
