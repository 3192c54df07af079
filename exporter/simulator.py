"""An N-central stand-in over real HTTP on loopback: the `--demo` backend and the tests' only fake.

It implements authenticate, refresh, validate, health, server-info, submit and poll as N-central's
OpenAPI description documents them (`ErrorResponse` bodies, `errors[]` on validation failures, a
configurable release in `server-info/extra`, tokens that expire, reports IN_PROGRESS for
`generation_time`, then COMPLETED), and produces faults on demand: error statuses, 429 with or without
Retry-After, HTML pages, garbage, truncated or oversized bodies, wrong types, connection resets, slow
answers, and FAILED/ABORTED/never-ending reports; and hostile ones: a body that drips in a byte at a
time, a malformed Content-Length, report ids out of range, an error page quoting the credentials it was sent.

For the customer scan it holds an estate of customers (names that need escaping, non-ASCII ones, two
sharing a name, one whose active issues answer 403), devices and active issues on patch and other
services, and serves `GET /api/devices` and `GET /api/org-units/{id}/active-issues` paged with a page cap
smaller than the 1000 asked for, answering 429 to calls beyond its concurrency limit per endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.config import INSTALL_STATUSES, PATCH_APPROVALS, PATCH_CATEGORIES

DEMO_JWT = "demo-jwt-eyJhbGciOiJIUzI1NiJ9.ZGVtbw.c2lnbmF0dXJl"
FIRST_REPORT_ID = 575523
# The N-central release the simulator claims (server-info/extra) and its API service's version (server-info).
DEFAULT_VERSION = "2025.4.0.12"
API_SERVICE_VERSION = "3.1.0"
# `PatchComparisonReportRequest.startDate` as the OpenAPI description constrains it.
START_DATE_PATTERN = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{3})?Z)?$"
)

# The vendor page's example numbers, one more device class, and an install breakdown.
DEFAULT_DATA: dict[str, Any] = {
    "deviceClassSummaries": [
        {
            "deviceClass": "Laptops - Windows",
            "approvalStatusCounts": {
                "declined": 2004, "notApproved": 7, "approvedForRemoval": 7, "noApproval": 150,
                "approvedForInstall": 6424,
            },
        },
        {
            "deviceClass": "Workstations - Windows",
            "approvalStatusCounts": {
                "declined": 414, "notApproved": 12, "approvedForRemoval": 1, "noApproval": 53,
                "approvedForInstall": 2975,
            },
        },
        {
            "deviceClass": "Servers - Windows",
            "approvalStatusCounts": {"declined": 96, "noApproval": 31, "approvedForInstall": 1210},
        },
    ],
    "patchSummaryList": [
        {
            "approvalStatus": "Approved for Install",
            "patchInstallStatusCounts": [
                {
                    "patchInstallStatus": "Installed",
                    "patchTypeSummaries": [
                        {"patchType": "securityUpdates", "count": 5120},
                        {"patchType": "criticalUpdates", "count": 1830},
                        {"patchType": "definationUpdates", "count": 2950},
                    ],
                },
                {
                    "patchInstallStatus": "Failed",
                    "patchTypeSummaries": [
                        {"patchType": "securityUpdates", "count": 23},
                        {"patchType": "criticalUpdates", "count": 4},
                    ],
                },
                {
                    "patchInstallStatus": "Installed With Errors",
                    "patchTypeSummaries": [{"patchType": "securityUpdates", "count": 6}],
                },
                {
                    "patchInstallStatus": "Aborted",
                    "patchTypeSummaries": [{"patchType": "definationUpdates", "count": 2}],
                },
                {
                    "patchInstallStatus": "Not Installed",
                    "patchTypeSummaries": [{"patchType": "securityUpdates", "count": 412}],
                },
            ],
        },
    ],
}

ENDPOINTS: tuple[str, ...] = ("authenticate", "refresh", "validate", "health", "submit", "poll")
ENDPOINTS += ("server_info", "server_info_extra")  # GET /api/server-info and /api/server-info/extra
ENDPOINTS += ("devices", "active_issues")  # GET /api/devices and /api/org-units/{id}/active-issues
# What each fault answers; see `_answer_fault`.
FAULTS = (
    "400", "401", "403", "404", "429", "500", "502", "503", "html", "garbage", "truncated", "error_body",
    "wrong_types", "negative", "not_integer", "no_report_id", "huge", "reset", "slow", "bad_tokens",
    "invalid_fields",
    # Hostile answers (issue 11): a body that drips in, odd header values, ids out of range, an echoed token.
    "drip", "bad_length", "bad_report_id", "echo_token",
)
OUTCOMES = ("COMPLETED", "FAILED", "ABORTED", "IN_PROGRESS")
# The customer estate: N-central serves fewer items per page than the 1000 asked for here, and answers 429
# to calls beyond its concurrency limit per endpoint.
DEFAULT_PAGE_CAP = 500
DEFAULT_CONCURRENCY_LIMIT = 2


@dataclass
class Fault:
    kind: str
    endpoint: str  # one of ENDPOINTS, or "any"
    remaining: int | None  # None: until cleared
    retry_after: str | None = None
    delay: float = 5.0
    value: str | None = None  # the header value of `bad_length`, the id of `bad_report_id`


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Report:
    created: float
    outcome: str
    data: dict[str, Any]
    generation_time: float


@dataclass
class _State:
    data: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_DATA))
    outcome: str = "COMPLETED"
    generation_time: float = 0.0
    access_tokens: dict[str, float] = field(default_factory=dict)
    refresh_tokens: dict[str, float] = field(default_factory=dict)
    reports: dict[int, _Report] = field(default_factory=dict)
    next_report_id: int = FIRST_REPORT_ID
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    issued_tokens: list[str] = field(default_factory=list)
    estate: Estate = field(default_factory=lambda: demo_estate())
    page_cap: int = DEFAULT_PAGE_CAP
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    latency: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0


class Simulator:
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
    ) -> None:
        """`version` is the N-central release it claims; before 2025.4 it has no patch reports API (404)."""
        self.jwt = jwt
        self.version = version
        self.access_expiry = access_expiry
        self.refresh_expiry = refresh_expiry
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _State(generation_time=generation_time)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    # --- lifecycle ---

    def start(self) -> Simulator:
        simulator = self

        class Handler(_Handler):
            sim = simulator

        self._stopping.clear()
        self._server = _Server((self._host, self._port), Handler)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ncentral-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; `start()` again listens on the same port (connections are refused meanwhile)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Keep-alive connections outlive the listener; cut them so clients really see the server gone.
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    # --- knobs ---

    def set_data(self, data: dict[str, Any]) -> None:
        """The `data` of reports submitted from now on."""
        with self._lock:
            self._state.data = copy.deepcopy(data)

    def set_outcome(self, outcome: str) -> None:
        """How reports submitted from now on end; IN_PROGRESS means never."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        with self._lock:
            self._state.outcome = outcome

    def set_generation_time(self, seconds: float) -> None:
        with self._lock:
            self._state.generation_time = seconds

    def add_fault(
        self,
        kind: str,
        *,
        endpoint: str = "any",
        count: int | None = 1,
        retry_after: str | None = None,
        delay: float = 5.0,
        value: str | None = None,
    ) -> None:
        """Answer the next `count` requests to `endpoint` with `kind` (see FAULTS). `delay`: the wait of
        `slow`, the pause between two bytes of `drip`; `value`: see Fault."""
        if kind not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if endpoint != "any" and endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be 'any' or one of {ENDPOINTS}")
        with self._lock:
            self._state.faults.append(Fault(kind, endpoint, count, retry_after, delay, value))

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every access and refresh token, as a server restart would."""
        with self._lock:
            self._state.access_tokens.clear()
            self._state.refresh_tokens.clear()

    def finish_reports(self) -> None:
        """Let every report already submitted complete at its next poll."""
        with self._lock:
            for report in self._state.reports.values():
                report.generation_time = 0.0

    @property
    def issued_tokens(self) -> list[str]:
        """Every access and refresh token handed out: secrets that must never leak."""
        with self._lock:
            return list(self._state.issued_tokens)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def count(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for request in self._state.requests if request.endpoint == endpoint)

    # --- knobs of the customer estate (devices and active issues) ---

    def set_estate(self, estate: Estate) -> None:
        with self._lock:
            self._state.estate = estate

    @property
    def estate(self) -> Estate:
        with self._lock:
            return self._state.estate

    def set_page_cap(self, items: int) -> None:
        """The most items a page holds, whatever pageSize asks for."""
        with self._lock:
            self._state.page_cap = items

    def set_concurrency_limit(self, calls: int) -> None:
        """Calls in flight per endpoint beyond this are answered 429."""
        with self._lock:
            self._state.concurrency_limit = calls

    def set_latency(self, seconds: float) -> None:
        """How long each devices or active-issues call takes to answer."""
        with self._lock:
            self._state.latency = seconds

    @property
    def max_in_flight(self) -> int:
        """The most devices/active-issues calls that were in flight at once (any endpoint) since reset."""
        with self._lock:
            return self._state.max_in_flight

    def reset_max_in_flight(self) -> None:
        with self._lock:
            self._state.max_in_flight = 0

    def _enter(self, endpoint: str) -> bool:
        with self._lock:
            state = self._state
            if state.in_flight.get(endpoint, 0) >= state.concurrency_limit:
                return False
            state.in_flight[endpoint] = state.in_flight.get(endpoint, 0) + 1
            state.max_in_flight = max(state.max_in_flight, sum(state.in_flight.values()))
            return True

    def _leave(self, endpoint: str) -> None:
        with self._lock:
            self._state.in_flight[endpoint] -= 1

    # --- request handling (called from handler threads) ---

    def _record(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            self._state.requests.append(request)
            for fault in self._state.faults:
                if fault.endpoint in ("any", request.endpoint):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._state.faults.remove(fault)
                    return fault
        return None

    def _issue_tokens(self) -> dict[str, Any]:
        now = self._clock()
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._state.access_tokens[access] = now + self.access_expiry
            self._state.issued_tokens += [access, refresh]
            self._state.refresh_tokens[refresh] = now + self.refresh_expiry
        return {
            "tokens": {
                "access": {"token": access, "type": "Bearer", "expirySeconds": self.access_expiry},
                "refresh": {"token": refresh, "type": "Body", "expirySeconds": self.refresh_expiry},
            },
            "refresh": "/api/auth/refresh",
            "validate": "/api/auth/validate",
        }

    def _access_valid(self, header: str) -> bool:
        token = header.removeprefix("Bearer ").strip()
        with self._lock:
            expiry = self._state.access_tokens.get(token)
        return expiry is not None and self._clock() < expiry

    def _use_refresh(self, token: str) -> bool:
        with self._lock:
            expiry = self._state.refresh_tokens.pop(token, None)
        return expiry is not None and self._clock() < expiry

    def has_patch_reports(self) -> bool:
        parts = self.version.split(".")
        try:
            return (int(parts[0]), int(parts[1])) >= (2025, 4)
        except (IndexError, ValueError):
            return True

    def _create_report(self) -> int:
        with self._lock:
            report_id = self._state.next_report_id
            self._state.next_report_id += 1
            self._state.reports[report_id] = _Report(
                self._clock(), self._state.outcome, copy.deepcopy(self._state.data), self._state.generation_time
            )
        return report_id

    def _report_status(self, report_id: int) -> dict[str, Any] | None:
        with self._lock:
            report = self._state.reports.get(report_id)
        if report is None:
            return None
        done = report.outcome != "IN_PROGRESS" and self._clock() - report.created >= report.generation_time
        status = report.outcome if done else "IN_PROGRESS"
        messages = {
            "IN_PROGRESS": "Patch comparison report is being generated in the background.",
            "COMPLETED": "Patch comparison report generated successfully.",
            "FAILED": "Patch comparison report generation failed.",
            "ABORTED": "Patch comparison report generation was aborted.",
        }
        return {
            "reportId": report_id,
            "reportStatus": status,
            "message": messages[status],
            "data": report.data if status == "COMPLETED" else None,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and hang-ups are the simulator's business (faults, clients that give up): no tracebacks.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _error(status: int, kind: str, text: str) -> dict[str, Any]:
    return {"status": status, "message": f"[ID={secrets.token_hex(4)}] {kind}: {text}"}


def _validation_error(errors: list[tuple[str, str]]) -> dict[str, Any]:
    """N-central's `ErrorResponse` for a request that fails validation: each field with its own message."""
    return {
        "status": 400,
        "message": f"[ID={secrets.token_hex(4)}] Multiple Validations Failed.",
        "errors": [{"field": name, "message": message} for name, message in errors],
    }


_ERROR_KINDS = {
    400: "BAD_REQUEST: BadRequestException",
    401: "UNAUTHORIZED: UnauthorizedException",
    403: "FORBIDDEN: AccessDeniedException",
    404: "NOT_FOUND: ResourceNotFoundException",
    429: "TOO_MANY_REQUESTS: RateLimitException",
    500: "INTERNAL_SERVER_ERROR: ApiServiceRuntimeException",
    502: "BAD_GATEWAY: upstream error",
    503: "SERVICE_UNAVAILABLE: ServiceUnavailableException",
}

_LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>N-central - Login</title></head>"
    b"<body><form action=\"/login\"><input name=\"user\"></form></body></html>"
)


def _validate_submit(body: Any) -> list[tuple[str, str]]:
    """The field errors of a submit body, checked against `PatchComparisonReportRequest`.

    Reading: the schema does not say whether unknown properties are refused; the simulator refuses them
    (a field the schema lacks, like customerId, would be ignored or refused by a real server: never send it)."""
    if not isinstance(body, dict):
        return [("body", "request body must be a JSON object")]
    errors: list[tuple[str, str]] = []
    start = body.get("startDate")
    if start is None:
        errors.append(("startDate", "startDate is required"))
    elif not isinstance(start, str) or not START_DATE_PATTERN.match(start):
        errors.append(("startDate", "startDate must be in the format YYYY-MM-DD"))
    names = {"installStatuses": "Install Status", "patchApprovals": "Patch Approval",
             "patchCategories": "Patch Category"}
    for key, allowed in (
        ("installStatuses", INSTALL_STATUSES), ("patchApprovals", PATCH_APPROVALS),
        ("patchCategories", PATCH_CATEGORIES),
    ):
        if key in body:
            values = body[key]
            if not isinstance(values, list):
                errors.append((key, f"{key} must be an array of strings"))
            elif bad := [value for value in values if value not in allowed]:
                errors.append((key, f"Invalid {names[key]} Values {bad}"))
    for key in sorted(set(body) - {"startDate", *names}):
        errors.append((key, f"{key} is not a property of PatchComparisonReportRequest"))
    return errors


class _Handler(BaseHTTPRequestHandler):
    sim: Simulator
    _body_text = ""  # the request's body, for the `echo_token` fault
    protocol_version = "HTTP/1.1"
    server_version = "N-central-simulator"
    disable_nagle_algorithm = True  # headers and body are two writes: no ~40 ms wait for a delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `Simulator.requests` instead."""

    def setup(self) -> None:
        super().setup()
        with self.sim._lock:
            self.sim._connections.add(self.connection)

    def finish(self) -> None:
        with self.sim._lock:
            self.sim._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _endpoint(self, method: str) -> str:
        path = self.path.split("?", 1)[0]
        routes = {
            ("POST", "/api/auth/authenticate"): "authenticate",
            ("POST", "/api/auth/refresh"): "refresh",
            ("GET", "/api/auth/validate"): "validate",
            ("GET", "/api/health"): "health",
            ("POST", "/api/report/patch-comparison"): "submit",
            ("GET", "/api/server-info"): "server_info",
            ("GET", "/api/server-info/extra"): "server_info_extra",
        }
        if (method, path) in routes:
            return routes[(method, path)]
        if method == "GET" and path.startswith("/api/report/"):
            return "poll"
        return _estate_endpoint(method, path) or "unknown"

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._body_text = body.decode("utf-8", "replace")
        endpoint = self._endpoint(method)
        request = RecordedRequest(method, self.path, endpoint, dict(self.headers.items()), body)
        fault = self.sim._record(request)
        if fault is not None:
            self._answer_fault(fault)
            return
        handlers = {
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
        }
        handler = handlers.get(endpoint)
        if endpoint in ("submit", "poll") and not self.sim.has_patch_reports():
            handler = None  # before 2025.4 these paths do not exist
        if handler is None:
            self._json(404, _error(404, _ERROR_KINDS[404], f"no endpoint {method} {self.path}"))
            return
        handler(body)

    # --- normal answers ---

    def _authorized(self) -> bool:
        if self.sim._access_valid(self.headers.get("Authorization", "")):
            return True
        self._json(401, _error(401, _ERROR_KINDS[401], "Invalid or expired access token"))
        return False

    def _authenticate(self, _body: bytes) -> None:
        if self.headers.get("Authorization", "") != f"Bearer {self.sim.jwt}":
            self._json(401, _error(401, _ERROR_KINDS[401], "Invalid JWT"))
            return
        self._json(200, self.sim._issue_tokens())

    def _refresh(self, body: bytes) -> None:
        if not self.sim._use_refresh(body.decode("utf-8", "replace").strip()):
            self._json(401, _error(401, _ERROR_KINDS[401], "Invalid or expired refresh token"))
            return
        self._json(200, self.sim._issue_tokens())

    def _validate(self, _body: bytes) -> None:
        if self._authorized():
            self._json(200, {"message": "The token is valid."})

    def _health(self, _body: bytes) -> None:
        self._json(200, {"currentTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())})

    def _server_info(self, _body: bytes) -> None:
        if self._authorized():
            self._json(200, {"version": API_SERVICE_VERSION, "jvmVersion": "17.0.9", "ncentral": None})

    def _server_info_extra(self, _body: bytes) -> None:
        if self._authorized():
            self._json(200, {"data": {"_extra": {
                "Installation: Deployment Product Version": self.sim.version,
                "Installation: UI Product Version": self.sim.version,
                "NVISION: Licensed": "true",
            }}, "_links": {}})

    def _submit(self, body: bytes) -> None:
        if not self._authorized():
            return
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        problems = _validate_submit(payload)
        if problems:
            self._json(400, _validation_error(problems))
            return
        report_id = self.sim._create_report()
        self._json(200, {
            "reportId": report_id, "reportStatus": "IN_PROGRESS",
            "message": "Patch comparison report is being generated in the background.", "data": None,
        })

    def _poll(self, _body: bytes) -> None:
        if not self._authorized():
            return
        tail = self.path.split("?", 1)[0].removeprefix("/api/report/")
        status = self.sim._report_status(int(tail)) if tail.isdigit() else None
        if status is None:
            self._json(404, _error(404, _ERROR_KINDS[404], f"Report {tail} not found"))
            return
        self._json(200, status)

    # --- the customer estate ---

    def _estate_call(self, endpoint: str, answer: Callable[[Estate, int], None]) -> None:
        """Authorise, enforce the concurrency limit, wait the latency, then answer."""
        if not self._authorized():
            return
        if not self.sim._enter(endpoint):
            self._json(429, _error(429, _ERROR_KINDS[429], "Too many concurrent requests; retry when one ends"))
            return
        try:
            with self.sim._lock:
                latency, estate, cap = self.sim._state.latency, self.sim._state.estate, self.sim._state.page_cap
            if latency > 0:
                self.sim._stopping.wait(latency)
            answer(estate, cap)
        finally:
            self.sim._leave(endpoint)

    def _paged(self, items: list[dict[str, Any]], cap: int) -> None:
        query = urllib.parse.parse_qs(self.path.partition("?")[2])
        try:
            number = int(query.get("pageNumber", ["1"])[0])
            size = int(query.get("pageSize", ["50"])[0])
        except ValueError:
            number = size = 0
        if number < 1 or not (size == -1 or 1 <= size <= 1000):
            self._json(400, _error(400, _ERROR_KINDS[400], "pageNumber must be >= 1, pageSize 1..1000 or -1"))
            return
        served = cap if size == -1 else min(size, cap)
        pages = -(-len(items) // served)
        data = items[(number - 1) * served:number * served]
        base = self.path.partition("?")[0]

        def link(page: int) -> str | None:
            return f"{base}?pageNumber={page}&pageSize={served}" if 1 <= page <= max(pages, 1) else None

        self._json(200, {
            "data": data, "pageNumber": number, "pageSize": served, "itemCount": len(data),
            "totalItems": len(items), "totalPages": pages,
            "_links": {"firstPage": link(1), "previousPage": link(number - 1), "nextPage": link(number + 1),
                       "lastPage": link(pages)},
        })

    def _devices(self, _body: bytes) -> None:
        self._estate_call("devices", lambda estate, cap: self._paged(estate.device_json(), cap))

    def _active_issues(self, _body: bytes) -> None:
        org_unit = self.path.partition("?")[0].removeprefix("/api/org-units/").removesuffix("/active-issues")

        def answer(estate: Estate, cap: int) -> None:
            customer = estate.customer(org_unit)
            if customer is None or customer.refused == 404:
                self._json(404, _error(404, _ERROR_KINDS[404], f"Customer with ID {org_unit} was not found!"))
            elif customer.refused is not None:
                status = customer.refused
                self._json(status, _error(status, _ERROR_KINDS[status], "Access denied to this organization unit"))
            else:
                self._paged(estate.issue_json(customer.customer_id), cap)

        self._estate_call("active_issues", answer)

    # --- faults ---

    def _answer_fault(self, fault: Fault) -> None:
        kind = fault.kind
        if kind.isdigit():
            status = int(kind)
            headers = {"Retry-After": fault.retry_after} if status == 429 and fault.retry_after else {}
            self._json(status, _error(status, _ERROR_KINDS[status], "simulated fault"), headers)
        elif kind == "invalid_fields":  # the OpenAPI description's own example of a validation failure
            self._json(400, _validation_error([
                ("installStatuses", "Invalid Install Status Values ['INVALID']"),
                ("startDate", "startDate must be in the format YYYY-MM-DD"),
            ]))
        elif kind == "html":
            self._send(200, _LOGIN_PAGE, "text/html; charset=utf-8")
        elif kind == "garbage":
            self._send(200, b"\x00\x9c garbage }{ not json", "application/json")
        elif kind == "truncated":
            self._send(200, b'{"reportId": 575523, "reportStatus": "COMPL', "application/json")
        elif kind == "error_body":
            self._json(200, _error(500, _ERROR_KINDS[500], "Unexpected error"))
        elif kind in ("wrong_types", "negative", "not_integer", "no_report_id"):
            self._json(200, self._malformed(kind))
        elif kind == "bad_tokens":
            pair = {"token": "line-one\nline-two-of-a-token", "type": "Bearer", "expirySeconds": 3600}
            self._json(200, {"tokens": {"access": pair, "refresh": {**pair, "type": "Body"}}})
        elif kind == "huge":
            self._send(200, b'{"padding": "' + b"x" * (4 * 2**20) + b'"}', "application/json")
        elif kind == "reset":
            # SO_LINGER with a zero timeout makes close() send a TCP reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif kind == "slow":
            self.sim._stopping.wait(fault.delay)
            self.close_connection = True
        elif kind in ("drip", "bad_length", "bad_report_id", "echo_token"):
            self._answer_hostile(fault)

    def _answer_hostile(self, fault: Fault) -> None:
        if fault.kind == "drip":
            # Headers at once, then Content-Length: 100000 one byte at a time, until the client gives up.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.close_connection = True
            with contextlib.suppress(OSError):
                for _ in range(100000):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    if self.sim._stopping.wait(fault.delay):
                        return
        elif fault.kind == "bad_length":
            # A body with a malformed Content-Length (e.g. "²" or 5,000 digits); the end is the connection's.
            body = json.dumps({"reportId": FIRST_REPORT_ID, "reportStatus": "IN_PROGRESS"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", fault.value or "\u00b2")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        elif fault.kind == "bad_report_id":
            report_id = int(fault.value or "-1")
            self._json(200, {"reportId": report_id, "reportStatus": "IN_PROGRESS", "message": "queued", "data": None})
        else:  # echo_token: an error page quoting the credentials it was sent (JSON-escaped, as a server would)
            sent = self.headers.get("Authorization", "") or self._body_text
            self._json(500, _error(500, _ERROR_KINDS[500], f"could not process credentials {sent}"))

    def _malformed(self, kind: str) -> dict[str, Any]:
        counts: dict[str, Any] = {"noApproval": 10, "approvedForInstall": 5}
        if kind == "wrong_types":
            return {"reportId": "575523", "reportStatus": "COMPLETED", "data": {"deviceClassSummaries": "many"}}
        if kind == "negative":
            counts["declined"] = -4
        if kind == "not_integer":
            counts["declined"] = 2.5
        if kind == "no_report_id":
            return {"reportStatus": "IN_PROGRESS", "message": "Report queued"}
        summary = {"deviceClass": "Laptops - Windows", "approvalStatusCounts": counts}
        return {
            "reportId": FIRST_REPORT_ID, "reportStatus": "COMPLETED", "message": "ok",
            "data": {"deviceClassSummaries": [summary]},
        }

    # --- output ---

    def _json(self, status: int, document: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# --- the customer estate: customers, devices and active issues ----------------------------------------

PATCH_SERVICE = "Patch Status v2"
LEGACY_PATCH_SERVICE = "Patch Status"
OTHER_SERVICES = ("Windows UAC Status", "Disk Space", "Agent Status", "CPU", "Windows Service")
DEVICE_CLASSES = ("Workstations - Windows", "Laptops - Windows", "Servers - Windows", "Workstations - macOS")
SO_NAME = "Demo Service Organization"
# Names a label value, an HTML page and a Grafana regex must carry unchanged.
DEMO_CUSTOMER_NAMES = (
    "Acme Corp", "Acme Corp", "Müller & Söhne GmbH", "Café Zürich AG", "東京テクノロジー株式会社",
    'Smith "Quotes" & <Sons>', "O'Brien\\Backslash IT", "<script>alert(1)</script> Ltd", "Ελληνική Εταιρεία",
    "Żółw Sp. z o.o.", "Regex (Round) [Square] {Curly}|Pipe*+?.^", "Test Lab",
)
FORBIDDEN_CUSTOMER = "Restricted Holdings"


@dataclass(frozen=True)
class EstateCustomer:
    customer_id: int
    name: str
    refused: int | None = None  # its active issues answer this status (403 or 404) instead


@dataclass(frozen=True)
class EstateDevice:
    device_id: int
    customer_id: int
    device_class: str


@dataclass(frozen=True)
class EstateIssue:
    device_id: int
    service_name: str
    notification_state: int = 5


@dataclass(frozen=True)
class Estate:
    customers: tuple[EstateCustomer, ...]
    devices: tuple[EstateDevice, ...]
    issues: tuple[EstateIssue, ...] = ()

    def customer(self, org_unit: str) -> EstateCustomer | None:
        return next((c for c in self.customers if str(c.customer_id) == org_unit), None)

    def device_json(self) -> list[dict[str, Any]]:
        return self._device_json

    @functools.cached_property
    def _device_json(self) -> list[dict[str, Any]]:
        names = {customer.customer_id: customer.name for customer in self.customers}
        return [
            {
                "deviceId": device.device_id, "longName": f"DEV-{device.device_id:06d}",
                "deviceClass": device.device_class, "deviceClassLabel": device.device_class, "isProbe": False,
                "orgUnitId": device.customer_id + 100_000, "soId": 50, "soName": SO_NAME,
                "customerId": device.customer_id, "customerName": names[device.customer_id],
                "siteId": device.customer_id + 100_000, "siteName": "Main site",
                "supportedOs": "Microsoft Windows 11", "lastApplianceCheckinTime": "2026-02-26T15:15:30Z",
                "deviceStatus": {"state": 1, "status": 1},
            }
            for device in self.devices
        ]

    def issue_json(self, customer_id: int) -> list[dict[str, Any]]:
        return self._issue_json.get(customer_id, [])

    @functools.cached_property
    def _issue_json(self) -> dict[int, list[dict[str, Any]]]:
        owner = {device.device_id: device.customer_id for device in self.devices}
        by_customer: dict[int, list[EstateIssue]] = {}
        for issue in self.issues:
            if issue.device_id in owner:
                by_customer.setdefault(owner[issue.device_id], []).append(issue)
        return {customer.customer_id: self._issues_of(customer, by_customer.get(customer.customer_id, []))
                for customer in self.customers}

    @staticmethod
    def _issues_of(customer: EstateCustomer, issues: list[EstateIssue]) -> list[dict[str, Any]]:
        customer_id, name = customer.customer_id, customer.name
        return [
            {
                "orgUnitId": customer_id + 100_000, "deviceId": issue.device_id,
                "notificationState": issue.notification_state, "serviceId": 7000 + index % 50,
                "serviceName": issue.service_name, "serviceType": "AMP", "taskId": 900_000 + index,
                "serviceItemId": 0,
                "_extra": {"deviceName": f"DEV-{issue.device_id:06d}", "customerTree": ["System", SO_NAME, name],
                           "patchManagementEnabled": True, "transitionTime": "2026-02-25T08:00:00Z"},
            }
            for index, issue in enumerate(issues)
        ]


def demo_estate(customers: int = 40, devices: int = 3000, seed: int = 12) -> Estate:
    """A deterministic estate: the demo names first (one customer refusing its active issues), devices
    spread unevenly, each customer with its own share of devices with patch issues (some with two patch
    services failing), and issues on other services too."""
    rng = random.Random(seed)
    names = [*DEMO_CUSTOMER_NAMES, FORBIDDEN_CUSTOMER]
    names += [f"Customer {index:03d}" for index in range(len(names), customers)]
    members = tuple(
        EstateCustomer(1000 + index, name, refused=403 if name == FORBIDDEN_CUSTOMER else None)
        for index, name in enumerate(names[:customers])
    )
    weights = [rng.uniform(0.2, 3.0) for _ in members]
    problem_rate = {customer.customer_id: rng.choice((0.0, 0.03, 0.1, 0.25, 0.45)) for customer in members}
    estate_devices: list[EstateDevice] = []
    issues: list[EstateIssue] = []
    for number in range(devices):
        customer = members[number] if number < len(members) else rng.choices(members, weights)[0]
        device = EstateDevice(2_000_000 + number, customer.customer_id,
                              rng.choices(DEVICE_CLASSES, (50, 30, 15, 5))[0])
        estate_devices.append(device)
        if rng.random() < problem_rate[customer.customer_id]:
            issues.append(EstateIssue(device.device_id, PATCH_SERVICE, rng.choice((1, 5))))
            if rng.random() < 0.2:
                issues.append(EstateIssue(device.device_id, LEGACY_PATCH_SERVICE))
        if rng.random() < 0.15:
            issues.append(EstateIssue(device.device_id, rng.choice(OTHER_SERVICES)))
    return Estate(members, tuple(estate_devices), tuple(issues))


def _estate_endpoint(method: str, path: str) -> str | None:
    if method != "GET":
        return None
    if path == "/api/devices":
        return "devices"
    if path.startswith("/api/org-units/") and path.endswith("/active-issues"):
        return "active_issues"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description="N-central patch reports API simulator (loopback only).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jwt", default=DEMO_JWT)
    parser.add_argument("--generation-time", type=float, default=2.0)
    parser.add_argument("--server-version", default=DEFAULT_VERSION,
                        help="the N-central release it claims (default: %(default)s; before 2025.4: no patch reports)")
    args = parser.parse_args()
    simulator = Simulator(
        jwt=args.jwt, port=args.port, generation_time=args.generation_time, version=args.server_version
    ).start()
    print(f"N-central {simulator.version} simulator on {simulator.url}; it accepts the JWT {simulator.jwt}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
