"""The latest good result and run outcomes per report: one immutable snapshot, swapped whole per change.

The job thread is the only writer; scrapes read `snapshot` without locking. With a storage path the
results and in-flight report ids survive restarts (written atomically on every change).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from exporter.customers import CustomerData
from exporter.errors import REASONS
from exporter.report import ReportData

log = logging.getLogger(__name__)

_STATE_VERSION = 1


@dataclass(frozen=True)
class InFlight:
    report_id: int
    submitted_at: float  # wall-clock seconds


@dataclass(frozen=True)
class ReportState:
    fingerprint: str
    data: ReportData | None = None
    last_success_time: float | None = None
    last_duration: float | None = None
    last_run_success: bool = False
    last_run_time: float | None = None
    last_reason: str | None = None
    last_error: str | None = None
    runs_total: int = 0
    failures: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(REASONS, 0)))
    in_flight: InFlight | None = None
    customers: CustomerData | None = None  # the customer scan's result (its state is named "customers")

    def with_failure(self, reason: str) -> Mapping[str, int]:
        counts = dict(self.failures)
        counts[reason] = counts.get(reason, 0) + 1
        return MappingProxyType(counts)


Snapshot = Mapping[str, ReportState]


class Collection(Protocol):
    """What the store keys a state on: a report's settings, or the customer scan's."""

    @property
    def name(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...


class Store:
    def __init__(self, reports: Iterable[Collection], path: str | None = None) -> None:
        self._path = Path(path) if path else None
        self._write_lock = threading.Lock()
        loaded = self._load()
        states: dict[str, ReportState] = {}
        for report in reports:
            stored = loaded.get(report.name)
            if stored is not None and stored.fingerprint == report.fingerprint:
                states[report.name] = stored
            else:
                if stored is not None:
                    log.info("stored result dropped: the report's filters changed", extra={"report": report.name})
                states[report.name] = ReportState(fingerprint=report.fingerprint)
        self.snapshot: Snapshot = MappingProxyType(states)

    def update(self, name: str, change: Callable[[ReportState], ReportState], *, fingerprint: str) -> bool:
        """Apply `change` to the report's state; False (and nothing done) if the report is gone or now
        asks for something else than `fingerprint` (a reload raced the run)."""
        with self._write_lock:
            current = self.snapshot.get(name)
            if current is None or current.fingerprint != fingerprint:
                return False
            states = dict(self.snapshot)
            states[name] = change(current)
            self._swap(states)
            return True

    def reconfigure(self, reports: Iterable[Collection]) -> list[str]:
        """Keep the state of reports that still ask for the same thing; returns the names started afresh."""
        with self._write_lock:
            states: dict[str, ReportState] = {}
            fresh: list[str] = []
            for report in reports:
                current = self.snapshot.get(report.name)
                if current is not None and current.fingerprint == report.fingerprint:
                    states[report.name] = current
                else:
                    states[report.name] = ReportState(fingerprint=report.fingerprint)
                    fresh.append(report.name)
            self._swap(states)
            return fresh

    def save(self) -> None:
        with self._write_lock:
            self._persist(self.snapshot)

    def _swap(self, states: dict[str, ReportState]) -> None:
        self.snapshot = MappingProxyType(states)
        self._persist(self.snapshot)

    # --- persistence ---

    def _persist(self, snapshot: Snapshot) -> None:
        if self._path is None:
            return
        document = {"version": _STATE_VERSION, "reports": {name: _to_json(s) for name, s in snapshot.items()}}
        try:
            text = json.dumps(document, ensure_ascii=False)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self._path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            # The rename itself is durable only once the directory is synced.
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except (OSError, ValueError) as exc:
            error = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
            log.error("cannot write the state file", extra={"path": str(self._path), "error": error})

    def _load(self) -> dict[str, ReportState]:
        if self._path is None:
            return {}
        # Left by a process killed between writing and renaming (the state file itself is intact). Only old
        # ones: a young one may belong to another exporter still writing (a rolling update on one volume).
        for stale in self._path.parent.glob(f".{self._path.name}.*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 600:
                    stale.unlink()
        if not self._path.exists():
            return {}
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
            if document.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown state file version {document.get('version')!r}")
            return {str(name): _from_json(raw) for name, raw in document["reports"].items()}
        except Exception as exc:  # a corrupt state file of any shape must never stop the exporter
            error = f"{type(exc).__name__}: {exc}"
            log.warning("ignoring unreadable state file", extra={"path": str(self._path), "error": error})
            return {}


def _to_json(state: ReportState) -> dict[str, Any]:
    return {
        "fingerprint": state.fingerprint,
        "data": state.data.to_json() if state.data is not None else None,
        "last_success_time": state.last_success_time,
        "last_duration": state.last_duration,
        "last_run_success": state.last_run_success,
        "last_run_time": state.last_run_time,
        "last_reason": state.last_reason,
        "in_flight": (
            {"report_id": state.in_flight.report_id, "submitted_at": state.in_flight.submitted_at}
            if state.in_flight is not None
            else None
        ),
        "customers": state.customers.to_json() if state.customers is not None else None,
    }


def _optional_float(value: object) -> float | None:
    """A timestamp or duration in seconds: finite, not negative, before the year 5000."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e11:
        raise TypeError(f"expected seconds, got {value!r}")
    return float(value)


def _optional_str(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def _from_json(raw: Mapping[str, Any]) -> ReportState:
    in_flight_raw = raw.get("in_flight")
    in_flight = None
    if in_flight_raw is not None:
        report_id = in_flight_raw["report_id"]
        if isinstance(report_id, bool) or not isinstance(report_id, int):
            raise TypeError(f"in_flight.report_id: expected an integer, got {report_id!r}")
        submitted_at = _optional_float(in_flight_raw["submitted_at"])
        if submitted_at is None:
            raise TypeError("in_flight.submitted_at: missing")
        in_flight = InFlight(report_id, submitted_at)
    return replace(
        ReportState(fingerprint=str(raw["fingerprint"])),
        data=ReportData.from_json(raw["data"]) if raw.get("data") is not None else None,
        last_success_time=_optional_float(raw.get("last_success_time")),
        last_duration=_optional_float(raw.get("last_duration")),
        last_run_success=raw.get("last_run_success") is True,
        last_run_time=_optional_float(raw.get("last_run_time")),
        last_reason=_optional_str(raw.get("last_reason")),
        in_flight=in_flight,
        customers=CustomerData.from_json(raw["customers"]) if raw.get("customers") is not None else None,
    )
