"""The simulator's HTTP front: a threading server on loopback whose handler records each request, answers
it with a due fault or with its endpoint's answer, and puts that `Reply` on the wire.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.simulator import faults
from exporter.simulator.api import (
    Answer,
    Drip,
    DripHeaders,
    RecordedRequest,
    Reply,
    Reset,
    Stall,
    endpoint,
    error,
    json_answer,
    validation_error,
)
from exporter.simulator.data import API_SERVICE_VERSION, validate_submit
from exporter.simulator.estate import Estate
from exporter.simulator.state import State


class Server(ThreadingHTTPServer):
    """Serves one `State` until `close()`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: State) -> None:
        self.state = state
        self.stopping = threading.Event()  # ends the waits of slow answers when the server closes
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, Handler)

    def close(self) -> None:
        """Stop listening, and cut the keep-alive connections that would outlive the listener, so clients
        really see the server gone."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and hang-ups are the simulator's business (faults, clients that give up): no tracebacks.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "N-central-simulator"
    disable_nagle_algorithm = True  # headers and body are two writes: no ~40 ms wait for a delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `Simulator.requests` instead."""

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    @property
    def sim(self) -> State:
        return self.server.state

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route = endpoint(method, self.path.partition("?")[0])
        request = RecordedRequest(method, self.path, route, dict(self.headers.items()), body, self.client_address[1])
        fault = self.sim.record(request)
        self._send(faults.reply(fault, request) if fault is not None else self._answer(request))

    def _answer(self, request: RecordedRequest) -> Answer:
        answers: dict[str, Callable[[RecordedRequest], Answer]] = {
            "authenticate": self._authenticate,
            "refresh": self._refresh,
            "validate": self._validate,
            "health": self._health,
            "submit": self._submit,
            "poll": self._poll,
            "server_info": self._server_info,
            "server_info_extra": self._server_info_extra,
            "devices": self._devices,
            "active_issues": self._active_issues,
            "service_monitor_status": self._service_monitor_status,
        }
        answer = answers.get(request.endpoint)
        if request.endpoint in ("submit", "poll") and not self.sim.has_patch_reports():
            answer = None  # before 2025.4 these paths do not exist
        if answer is None:
            return error(404, f"no endpoint {request.method} {request.path}")
        return answer(request)

    # --- normal answers ---

    def _refusal(self, request: RecordedRequest) -> Answer | None:
        """The 401 for a request without a valid access token; None for one with."""
        if self.sim.access_valid(request.header("Authorization")):
            return None
        return error(401, "Invalid or expired access token")

    def _authenticate(self, request: RecordedRequest) -> Answer:
        if request.header("Authorization") != f"Bearer {self.sim.jwt}":
            return error(401, "Invalid JWT")
        return json_answer(200, self.sim.issue_tokens())

    def _refresh(self, request: RecordedRequest) -> Answer:
        if not self.sim.use_refresh(request.body.decode("utf-8", "replace").strip()):
            return error(401, "Invalid or expired refresh token")
        return json_answer(200, self.sim.issue_tokens())

    def _validate(self, request: RecordedRequest) -> Answer:
        return self._refusal(request) or json_answer(200, {"message": "The token is valid."})

    def _health(self, _request: RecordedRequest) -> Answer:
        return json_answer(200, {"currentTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())})

    def _server_info(self, request: RecordedRequest) -> Answer:
        return self._refusal(request) or json_answer(
            200, {"version": API_SERVICE_VERSION, "jvmVersion": "17.0.9", "ncentral": None}
        )

    def _server_info_extra(self, request: RecordedRequest) -> Answer:
        return self._refusal(request) or json_answer(200, {"data": {"_extra": {
            "Installation: Deployment Product Version": self.sim.version,
            "Installation: UI Product Version": self.sim.version,
            "NVISION: Licensed": "true",
        }}, "_links": {}})

    def _submit(self, request: RecordedRequest) -> Answer:
        if refusal := self._refusal(request):
            return refusal
        try:
            payload = request.json()
        except ValueError:
            payload = None
        if problems := validate_submit(payload):
            return validation_error(problems)
        return json_answer(200, {
            "reportId": self.sim.create_report(payload), "reportStatus": "IN_PROGRESS",
            "message": "Patch comparison report is being generated in the background.", "data": None,
        })

    def _poll(self, request: RecordedRequest) -> Answer:
        if refusal := self._refusal(request):
            return refusal
        tail = request.route.removeprefix("/api/report/")
        status = self.sim.report_status(int(tail)) if tail.isdigit() else None
        if status is None:
            return error(404, f"Report {tail} not found")
        return json_answer(200, status)

    # --- the customer estate ---

    def _estate_call(self, request: RecordedRequest, answer: Callable[[Estate, int], Answer]) -> Answer:
        """Authorise, enforce the concurrency limit, answer from the estate and its page cap, and send the
        answer once the latency has passed since the request arrived (the simulator's own work is part of
        it, as a server's is of its answer time)."""
        arrived = time.monotonic()
        if refusal := self._refusal(request):
            return refusal
        if not self.sim.enter(request.endpoint):
            return error(429, "Too many concurrent requests; retry when one ends")
        try:
            estate, cap, latency = self.sim.estate_terms()
            reply = answer(estate, cap)
            if latency > 0:
                self.server.stopping.wait(max(0.0, arrived + latency - time.monotonic()))
            return reply
        finally:
            self.sim.leave(request.endpoint)

    def _devices(self, request: RecordedRequest) -> Answer:
        def answer(estate: Estate, cap: int) -> Answer:
            now = self.sim.wall()
            return paged(estate.devices, cap, request.path, lambda first, end: estate.device_json(first, end, now))

        return self._estate_call(request, answer)

    def _active_issues(self, request: RecordedRequest) -> Answer:
        org_unit = request.route.removeprefix("/api/org-units/").removesuffix("/active-issues")

        def answer(estate: Estate, cap: int) -> Answer:
            customer = estate.customer(org_unit)
            if customer is None or customer.refused == 404:
                return error(404, f"Customer with ID {org_unit} was not found!")
            if customer.refused is not None:
                return error(customer.refused, "Access denied to this organization unit")
            items = estate.issue_json(customer.customer_id)
            return paged(items, cap, request.path, lambda first, end: items[first:end])

        return self._estate_call(request, answer)

    def _service_monitor_status(self, request: RecordedRequest) -> Answer:
        tail = request.route.removeprefix("/api/devices/").removesuffix("/service-monitor-status")

        def answer(estate: Estate, _cap: int) -> Answer:
            status, services = estate.service_answer(int(tail), time.time()) if tail.isdigit() else (404, [])
            if status == 404:
                return error(404, f"Device with ID {tail} was not found!")
            if status != 200:
                return error(status, "Access denied to this device")
            return json_answer(200, {"data": services, "totalItems": len(services)})

        return self._estate_call(request, answer)

    # --- output ---

    def _send(self, reply: Reply) -> None:
        match reply:
            case Answer():
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                length = str(len(reply.body)) if reply.content_length is None else reply.content_length
                self.send_header("Content-Length", length)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
                if reply.close:
                    self.close_connection = True
            case Reset():
                # SO_LINGER with a zero timeout makes close() send a TCP reset.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
            case Stall():
                self.server.stopping.wait(reply.seconds)
                self.close_connection = True
            case Drip():
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(reply.length))
                self.end_headers()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    for _ in range(reply.length):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        if self.server.stopping.wait(reply.pause):
                            return
            case DripHeaders():
                self.close_connection = True
                header = b"X-Padding: " + b"x" * max(0, reply.length - 11)
                with contextlib.suppress(OSError):
                    self.wfile.write(f"{self.protocol_version} 200 OK\r\n".encode())
                    for index in range(len(header)):
                        self.wfile.write(header[index:index + 1])
                        self.wfile.flush()
                        if self.server.stopping.wait(reply.pause):
                            return


def paged(items: Sequence[object], cap: int, path: str, render: Callable[[int, int], list[Any]]) -> Answer:
    """One page of `items` as `path` (with pageNumber and pageSize in its query) asks for it, at most `cap`
    items (`render` gives those from one index to another as JSON values), with N-central's paging fields
    and links; 400 for a page it cannot serve."""
    base, _, query_text = path.partition("?")
    query = urllib.parse.parse_qs(query_text)
    try:
        number = int(query.get("pageNumber", ["1"])[0])
        size = int(query.get("pageSize", ["50"])[0])
    except ValueError:
        number = size = 0
    if number < 1 or not (size == -1 or 1 <= size <= 1000):
        return error(400, "pageNumber must be >= 1, pageSize 1..1000 or -1")
    served = cap if size == -1 else min(size, cap)
    pages = -(-len(items) // served)
    data = render((number - 1) * served, number * served)

    def link(page: int) -> str | None:
        return f"{base}?pageNumber={page}&pageSize={served}" if 1 <= page <= max(pages, 1) else None

    return json_answer(200, {
        "data": data, "pageNumber": number, "pageSize": served, "itemCount": len(data),
        "totalItems": len(items), "totalPages": pages,
        "_links": {"firstPage": link(1), "previousPage": link(number - 1), "nextPage": link(number + 1),
                   "lastPage": link(pages)},
    })
