"""N-central's API as the simulator speaks it: which endpoint a request is for, what it answers as data
(`Reply`: an `Answer`, or one of the ways a broken server does not answer), and its `ErrorResponse` bodies.

Faults and endpoints return a `Reply`; only the HTTP front (front.py) puts one on the wire.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENDPOINTS: tuple[str, ...] = ("authenticate", "refresh", "validate", "health", "submit", "poll")
ENDPOINTS += ("server_info", "server_info_extra")  # GET /api/server-info and /api/server-info/extra
ENDPOINTS += ("devices", "active_issues")  # GET /api/devices and /api/org-units/{id}/active-issues
ENDPOINTS += ("service_monitor_status",)  # GET /api/devices/{id}/service-monitor-status

_ROUTES = {
    ("POST", "/api/auth/authenticate"): "authenticate",
    ("POST", "/api/auth/refresh"): "refresh",
    ("GET", "/api/auth/validate"): "validate",
    ("GET", "/api/health"): "health",
    ("POST", "/api/report/patch-comparison"): "submit",
    ("GET", "/api/server-info"): "server_info",
    ("GET", "/api/server-info/extra"): "server_info_extra",
    ("GET", "/api/devices"): "devices",
}


def endpoint(method: str, path: str) -> str:
    """The endpoint (one of ENDPOINTS) a request for `path` (without its query) is for, or "unknown"."""
    if (method, path) in _ROUTES:
        return _ROUTES[(method, path)]
    if method == "GET" and path.startswith("/api/report/"):
        return "poll"
    if method == "GET" and path.startswith("/api/org-units/") and path.endswith("/active-issues"):
        return "active_issues"
    if method == "GET" and path.startswith("/api/devices/") and path.endswith("/service-monitor-status"):
        return "service_monitor_status"
    return "unknown"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0  # the client's source port: which connection the request came on

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        """The value of header `name` (any case), or ""."""
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), "")

    @property
    def route(self) -> str:
        """The path without its query."""
        return self.path.partition("?")[0]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    content_length: str | None = None  # the header as sent when it is not the body's length (a fault)
    close: bool = False  # hang up after it


@dataclass(frozen=True)
class Reset:
    """No answer: the connection is reset (a TCP RST)."""


@dataclass(frozen=True)
class Stall:
    """No answer for `seconds` (or until the simulator stops), then the connection closes."""

    seconds: float


@dataclass(frozen=True)
class Drip:
    """Headers announcing `length` bytes at once, then the body one byte every `pause` seconds, until the
    client or the simulator gives up."""

    length: int
    pause: float


@dataclass(frozen=True)
class DripHeaders:
    """The status line at once, then a header line of `length` bytes one byte every `pause` seconds, until
    the client or the simulator gives up: the headers never end."""

    length: int
    pause: float


Reply = Answer | Reset | Stall | Drip | DripHeaders


def json_answer(status: int, document: object, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(document).encode(), headers=headers or {})


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


def error_document(status: int, text: str) -> dict[str, Any]:
    """N-central's `ErrorResponse` for an error of `status`."""
    return {"status": status, "message": f"[ID={secrets.token_hex(4)}] {_ERROR_KINDS[status]}: {text}"}


def error(status: int, text: str, headers: Mapping[str, str] | None = None) -> Answer:
    return json_answer(status, error_document(status, text), headers)


def validation_error(errors: list[tuple[str, str]]) -> Answer:
    """N-central's `ErrorResponse` for a request that fails validation: each field with its own message."""
    return json_answer(400, {
        "status": 400,
        "message": f"[ID={secrets.token_hex(4)}] Multiple Validations Failed.",
        "errors": [{"field": name, "message": message} for name, message in errors],
    })
