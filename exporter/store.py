"""The latest good result and run outcomes per report: one immutable snapshot, swapped whole per change.

The job thread is the only writer; scrapes read `snapshot` without locking. With a storage path the
results and in-flight report ids survive restarts (written atomically on every change); the state file's
format is this module's (the values in it are checked by `report.report_data` and
`customers.customer_data`, as strictly as N-central's answers).
"""

from __future__ import annotations

import contextlib
import hashlib
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
from typing import Any, BinaryIO, Protocol

import portalocker

from exporter.customers import CustomerData, customer_data
from exporter.errors import REASONS, os_reason
from exporter.files import NOFOLLOW, FileRefused, check_regular, not_regular, read_regular, size_text
from exporter.report import ReportData, report_data, valid_report_id

log = logging.getLogger(__name__)

_STATE_VERSION = 1
# A stored timestamp later than now by more than this is implausible (a clock far off, or a doctored file).
MAX_CLOCK_SKEW = 300.0
# The largest state file read back, and so the largest written: far above the defaults' few MiB (5,000
# series per report, 20,000 customer series), and a bound on what a start-up reads (see README).
MAX_STATE_FILE = 64 * 2**20


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
    def __init__(
        self,
        reports: Iterable[Collection],
        path: str | None = None,
        *,
        server: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`server` (see `server_identity`) ties the stored results and in-flight ids to one N-central
        server and API user. With a `path`, the state file is locked for the store's life (raises
        StateFileLocked if another exporter holds it)."""
        self._path = Path(path) if path else None
        self._write_lock = threading.Lock()
        self.write_failures = 0  # state writes that failed, for ncentral_patch_exporter_state_write_failures_total
        self._server = server
        self._wall = wall
        self._written: str | None = None  # digest of the text last written, to skip writing it again
        self._file_lock = StateFileLock(self._path) if self._path is not None else None
        stored_server, loaded = self._load()
        if loaded and server is not None and stored_server is not None and stored_server != server:
            log.warning(
                "the N-central server (URL or API user) differs from the one the stored results came from; "
                "dropping them and any report id in flight",
                extra={"path": str(self._path), "reports": sorted(loaded)},
            )
            loaded = {}
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

    def close(self) -> None:
        """Release the state file's lock; nothing is written after this."""
        with self._write_lock:
            if self._file_lock is not None:
                self._file_lock.release()

    def update(
        self, name: str, change: Callable[[ReportState], ReportState], *, fingerprint: str,
        server: str | None = None,
    ) -> bool:
        """Apply `change` to the report's state; False (and nothing done) if the report is gone or now
        asks for something else than `fingerprint`, or of another `server` (a reload raced the run)."""
        with self._write_lock:
            current = self.snapshot.get(name)
            if current is None or current.fingerprint != fingerprint:
                return False
            if server is not None and self._server is not None and server != self._server:
                return False
            states = dict(self.snapshot)
            states[name] = change(current)
            self._swap(states)
            return True

    def reconfigure(self, reports: Iterable[Collection], *, server: str | None = None) -> list[str]:
        """Keep the state of reports that still ask the same server for the same thing; returns the names
        started afresh. Writes the state file only if something changed."""
        with self._write_lock:
            server_changed = server is not None and self._server is not None and server != self._server
            if server_changed:
                log.warning(
                    "the N-central server (URL or API user) changed; dropping the stored results and any "
                    "report id in flight",
                    extra={"reports": sorted(self.snapshot)},
                )
            if server is not None:
                self._server = server
            states: dict[str, ReportState] = {}
            fresh: list[str] = []
            for report in reports:
                current = self.snapshot.get(report.name)
                if current is not None and current.fingerprint == report.fingerprint and not server_changed:
                    states[report.name] = current
                else:
                    states[report.name] = ReportState(fingerprint=report.fingerprint)
                    fresh.append(report.name)
            if states.keys() != self.snapshot.keys() or any(
                states[name] is not self.snapshot[name] for name in states
            ) or server_changed:
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
        if self._path is None or self._file_lock is None or not self._file_lock.held:
            return  # no state file, or closed: the lock may already be another exporter's
        document: dict[str, Any] = {"version": _STATE_VERSION}
        if self._server is not None:
            document["server"] = self._server
        document["reports"] = {name: _to_json(s) for name, s in snapshot.items()}
        try:
            # mkstemp creates a new name with O_EXCL and O_NOFOLLOW: never a file a link placed there names.
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._path.parent)
            try:
                # Streamed to the file and its digest at once: no copy of the whole text in memory.
                digest = hashlib.sha256()
                size = 0
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    for chunk in json.JSONEncoder(ensure_ascii=False).iterencode(document):
                        encoded = chunk.encode("utf-8")
                        size += len(encoded)
                        if size > MAX_STATE_FILE:  # what is written must be what a start-up reads back
                            raise FileRefused(f"the state would be larger than {size_text(MAX_STATE_FILE)}")
                        handle.write(chunk)
                        digest.update(encoded)
                    if digest.hexdigest() == self._written:
                        Path(tmp).unlink()
                        return  # nothing changed since the last write: no rename, no fsync
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
            self._written = digest.hexdigest()
        except (OSError, ValueError) as exc:
            error = os_reason(exc, detail=True)
            self.write_failures += 1
            log.error("cannot write the state file", extra={"path": str(self._path), "error": error})

    def _load(self) -> tuple[str | None, dict[str, ReportState]]:
        """The stored server identity and the readable entries; an unreadable entry is logged and skipped,
        the others kept."""
        if self._path is None:
            return None, {}
        # Left by a process killed between writing and renaming (the state file itself is intact). We hold
        # the lock, so no other exporter can be writing one now: all of them go, whatever their age.
        for stale in self._path.parent.glob(f".{self._path.name}.*"):
            with contextlib.suppress(OSError):
                stale.unlink()
                log.info("removed a temporary state file left by an interrupted write", extra={"path": str(stale)})
        if not self._path.exists():
            return None, {}
        try:
            document = json.loads(read_regular(self._path, MAX_STATE_FILE).decode("utf-8"))
            if document.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown state file version {document.get('version')!r}")
            entries = document["reports"]
            if not isinstance(entries, dict):
                raise TypeError("reports: expected an object")
            server = document.get("server")
            if server is not None and not isinstance(server, str):
                raise TypeError("server: expected text")
        except Exception as exc:  # a corrupt state file of any shape must never stop the exporter
            error = os_reason(exc) if isinstance(exc, FileRefused) else f"{type(exc).__name__}: {exc}"
            log.warning("ignoring unreadable state file", extra={"path": str(self._path), "error": error})
            return None, {}
        states: dict[str, ReportState] = {}
        now = self._wall()
        for name, raw in entries.items():
            try:
                states[str(name)] = _from_json(raw, now)
            except Exception as exc:  # one bad entry costs that entry only
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "ignoring an unreadable entry of the state file",
                    extra={"path": str(self._path), "report": str(name), "error": error[:300]},
                )
        return server, states


class StateFileLocked(Exception):
    """Another exporter holds the state file."""


class StateFileLock:
    """An exclusive advisory lock on `<state file>.lock` (flock on POSIX, msvcrt on Windows, through
    portalocker), held for the exporter's life: two exporters on one state file would overwrite each
    other's results. The lock file is a sibling because the state file itself is replaced on every write;
    the OS releases the lock when the process ends, however. The lock file is opened without following a
    link: one placed there by someone else would make the exporter create or truncate the file it names."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o600)  # non-inheritable (PEP 446)
        except OSError as exc:
            if self.path.is_symlink():  # O_NOFOLLOW's ELOOP says it in other words
                raise StateFileLocked(f"{path}: {_linked(self.path)}") from None
            raise StateFileLocked(f"{path}: cannot create the lock file {self.path}: {os_reason(exc)}") from None
        self._file: BinaryIO | None = os.fdopen(fd, "r+b", buffering=0)
        try:
            check_regular(fd)
            portalocker.lock(self._file, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except (OSError, portalocker.LockException) as exc:
            self.release()
            if isinstance(exc, portalocker.AlreadyLocked):
                raise StateFileLocked(
                    f"{path}: the state file is in use by another exporter (lock {self.path} held)"
                ) from None
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise StateFileLocked(f"{path}: cannot lock {self.path}: {reason}") from None

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None


def _linked(lock: Path) -> str:
    return f"the lock file {lock} is a symbolic link; remove it (the exporter does not follow a link there)"


def check_storage_path(path: str) -> str | None:
    """Why the state file cannot be kept at `path`, or None. Start-up and --check-config refuse a path that
    fails, rather than log an error at every write; a missing directory is not created (a typo would
    otherwise scatter state files), deployments create it (Docker image, systemd StateDirectory)."""
    target = Path(path)
    if target.is_dir():
        return f"{path} is a directory; give the state file's path, e.g. {target / 'state.json'}"
    if target.exists() and (kind := not_regular(target.stat().st_mode)) is not None:
        return f"{path} is {kind}; give the path of a state file the exporter may replace"
    lock = target.with_name(target.name + ".lock")
    if lock.is_symlink():
        return _linked(lock)
    directory = target.parent
    if not directory.is_dir():
        return f"directory {directory} does not exist; create it (the exporter does not)"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write in {directory}: {os_reason(exc)}"
    return None


def _to_json(state: ReportState) -> dict[str, Any]:
    return {
        "fingerprint": state.fingerprint,
        "data": _data_to_json(state.data) if state.data is not None else None,
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
        "customers": _customers_to_json(state.customers) if state.customers is not None else None,
    }


def _data_to_json(data: ReportData) -> dict[str, Any]:
    return {"approvals": [list(row) for row in data.approvals], "installs": [list(row) for row in data.installs]}


def _customers_to_json(data: CustomerData) -> dict[str, Any]:
    # Error counts are counters of this process, like the run failures: not persisted.
    return {"rows": [list(row) for row in data.rows], "systems": [list(row) for row in data.systems]}


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


def _not_future(value: float | None, key: str, now: float) -> float | None:
    if value is not None and value > now + MAX_CLOCK_SKEW:
        raise ValueError(f"{key}: {value!r} is in the future (now {now:.0f})")
    return value


def _from_json(raw: Mapping[str, Any], now: float) -> ReportState:
    data, customers = raw.get("data"), raw.get("customers")
    in_flight_raw = raw.get("in_flight")
    in_flight = None
    if in_flight_raw is not None:
        report_id = in_flight_raw["report_id"]
        if not valid_report_id(report_id):
            raise TypeError(f"in_flight.report_id: expected a 32-bit report id, got {report_id!r}")
        submitted_at = _not_future(_optional_float(in_flight_raw["submitted_at"]), "in_flight.submitted_at", now)
        if submitted_at is None:
            raise TypeError("in_flight.submitted_at: missing")
        in_flight = InFlight(report_id, submitted_at)
    return replace(
        ReportState(fingerprint=str(raw["fingerprint"])),
        data=report_data(data["approvals"], data["installs"], "state") if data is not None else None,
        last_success_time=_not_future(_optional_float(raw.get("last_success_time")), "last_success_time", now),
        last_duration=_optional_float(raw.get("last_duration")),
        last_run_success=raw.get("last_run_success") is True,
        last_run_time=_not_future(_optional_float(raw.get("last_run_time")), "last_run_time", now),
        last_reason=_optional_str(raw.get("last_reason")),
        in_flight=in_flight,
        customers=customer_data(customers["rows"], customers["systems"], "state") if customers is not None else None,
    )
