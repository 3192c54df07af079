"""What the simulated N-central holds, behind one lock: tokens, reports, the faults to come, the requests it
saw, the customer estate and its limits.

The public methods are the knobs tests and `--demo` turn; the HTTP front's handler threads call the
underscored ones.
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.simulator.api import ENDPOINTS, RecordedRequest
from exporter.simulator.data import DEFAULT_DATA, FIRST_REPORT_ID, OUTCOMES, REPORT_MESSAGES, release_has_patch_reports
from exporter.simulator.estate import (
    DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_PAGE_CAP,
    ENDPOINT_CONCURRENCY_LIMITS,
    Estate,
    demo_estate,
)
from exporter.simulator.faults import FAULTS, Fault
from exporter.simulator.filters import filtered


@dataclass
class _Report:
    created: float
    outcome: str
    data: dict[str, Any]
    generation_time: float


class State:
    def __init__(
        self,
        *,
        jwt: str,
        generation_time: float,
        access_expiry: int,
        refresh_expiry: int,
        clock: Callable[[], float],
        version: str,
        wall: Callable[[], float],
    ) -> None:
        """`version` is the N-central release it claims; before 2025.4 it has no patch reports API (404).
        `clock` times the tokens; `wall` is the server's time of day, which devices' check-ins are served
        relative to."""
        self.jwt = jwt
        self.version = version
        self.access_expiry = access_expiry
        self.refresh_expiry = refresh_expiry
        self._clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._data: dict[str, Any] = copy.deepcopy(DEFAULT_DATA)
        self._outcome = "COMPLETED"
        self._generation_time = generation_time
        self._access_tokens: dict[str, float] = {}
        self._refresh_tokens: dict[str, float] = {}
        self._reports: dict[int, _Report] = {}
        self._next_report_id = FIRST_REPORT_ID
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._issued_tokens: list[str] = []
        self._estate = demo_estate()
        self._page_cap = DEFAULT_PAGE_CAP
        self._concurrency_limit = DEFAULT_CONCURRENCY_LIMIT
        self._concurrency_limits = dict(ENDPOINT_CONCURRENCY_LIMITS)
        self._latency = 0.0
        self._in_flight: dict[str, int] = {}
        self._max_in_flight = 0

    # --- knobs ---

    def set_data(self, data: dict[str, Any]) -> None:
        """The counts of reports submitted from now on, as a report without filters over the last 90 days
        counts them; a report's filters narrow them (see `filters`)."""
        with self._lock:
            self._data = copy.deepcopy(data)

    def set_outcome(self, outcome: str) -> None:
        """How reports submitted from now on end; IN_PROGRESS means never."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        with self._lock:
            self._outcome = outcome

    def set_generation_time(self, seconds: float) -> None:
        with self._lock:
            self._generation_time = seconds

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
        `slow`, the pause between two bytes of `drip` and `drip_headers`; `value`: see Fault."""
        if kind not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if endpoint != "any" and endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be 'any' or one of {ENDPOINTS}")
        with self._lock:
            self._faults.append(Fault(kind, endpoint, count, retry_after, delay, value))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every access and refresh token, as a server restart would."""
        with self._lock:
            self._access_tokens.clear()
            self._refresh_tokens.clear()

    def finish_reports(self) -> None:
        """Let every report already submitted complete at its next poll."""
        with self._lock:
            for report in self._reports.values():
                report.generation_time = 0.0

    @property
    def issued_tokens(self) -> list[str]:
        """Every access and refresh token handed out: secrets that must never leak."""
        with self._lock:
            return list(self._issued_tokens)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for request in self._requests if request.endpoint == endpoint)

    def has_patch_reports(self) -> bool:
        return release_has_patch_reports(self.version)

    # --- knobs of the customer estate (devices and active issues) ---

    def set_estate(self, estate: Estate) -> None:
        with self._lock:
            self._estate = estate

    @property
    def estate(self) -> Estate:
        with self._lock:
            return self._estate

    def set_page_cap(self, items: int) -> None:
        """The most items a page holds, whatever pageSize asks for."""
        with self._lock:
            self._page_cap = items

    def set_concurrency_limit(self, calls: int, *, endpoint: str | None = None) -> None:
        """Calls in flight to `endpoint` beyond this are answered 429; without `endpoint`, to each endpoint
        that has no limit of its own."""
        with self._lock:
            if endpoint is None:
                self._concurrency_limit = calls
            else:
                self._concurrency_limits[endpoint] = calls

    def set_latency(self, seconds: float) -> None:
        """How long each devices, active-issues or service-monitor-status call takes to answer."""
        with self._lock:
            self._latency = seconds

    @property
    def max_in_flight(self) -> int:
        """The most devices/active-issues/service-monitor-status calls that were in flight at once (any
        endpoint) since reset."""
        with self._lock:
            return self._max_in_flight

    def reset_max_in_flight(self) -> None:
        with self._lock:
            self._max_in_flight = 0

    # --- request handling (called from handler threads) ---

    def record(self, request: RecordedRequest) -> Fault | None:
        """Keep `request`; the fault it is to be answered with, if one is due."""
        with self._lock:
            self._requests.append(request)
            for fault in self._faults:
                if fault.endpoint in ("any", request.endpoint):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def issue_tokens(self) -> dict[str, Any]:
        """A new access and refresh token pair, as N-central's authenticate and refresh answer it."""
        now = self._clock()
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access] = now + self.access_expiry
            self._issued_tokens += [access, refresh]
            self._refresh_tokens[refresh] = now + self.refresh_expiry
        return {
            "tokens": {
                "access": {"token": access, "type": "Bearer", "expirySeconds": self.access_expiry},
                "refresh": {"token": refresh, "type": "Body", "expirySeconds": self.refresh_expiry},
            },
            "refresh": "/api/auth/refresh",
            "validate": "/api/auth/validate",
        }

    def access_valid(self, header: str) -> bool:
        """Whether an Authorization header carries an access token issued and not expired."""
        token = header.removeprefix("Bearer ").strip()
        with self._lock:
            expiry = self._access_tokens.get(token)
        return expiry is not None and self._clock() < expiry

    def use_refresh(self, token: str) -> bool:
        """Spend a refresh token (each works once); whether it was issued and not expired."""
        with self._lock:
            expiry = self._refresh_tokens.pop(token, None)
        return expiry is not None and self._clock() < expiry

    def create_report(self, body: Mapping[str, Any]) -> int:
        """A new report for the (valid) submit `body`, generating from now on with the outcome set and the
        data as its filters and start date count it; its id."""
        today = dt.datetime.now(dt.UTC).date()
        with self._lock:
            report_id = self._next_report_id
            self._next_report_id += 1
            self._reports[report_id] = _Report(
                self._clock(), self._outcome, filtered(self._data, body, today), self._generation_time
            )
        return report_id

    def report_status(self, report_id: int) -> dict[str, Any] | None:
        """The report's status as a poll answers it; None for an id never issued."""
        with self._lock:
            report = self._reports.get(report_id)
        if report is None:
            return None
        done = report.outcome != "IN_PROGRESS" and self._clock() - report.created >= report.generation_time
        status = report.outcome if done else "IN_PROGRESS"
        return {
            "reportId": report_id,
            "reportStatus": status,
            "message": REPORT_MESSAGES[status],
            "data": report.data if status == "COMPLETED" else None,
        }

    def enter(self, endpoint: str) -> bool:
        """Count a call to `endpoint` in flight; False (and not counted) beyond the concurrency limit."""
        with self._lock:
            if self._in_flight.get(endpoint, 0) >= self._concurrency_limits.get(endpoint, self._concurrency_limit):
                return False
            self._in_flight[endpoint] = self._in_flight.get(endpoint, 0) + 1
            self._max_in_flight = max(self._max_in_flight, sum(self._in_flight.values()))
            return True

    def leave(self, endpoint: str) -> None:
        with self._lock:
            self._in_flight[endpoint] -= 1

    def estate_terms(self) -> tuple[Estate, int, float]:
        """The estate, its page cap and its latency, as one consistent view."""
        with self._lock:
            return self._estate, self._page_cap, self._latency
