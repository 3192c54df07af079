"""The latest good result and run outcomes per collection: one immutable snapshot, swapped whole per change.

The runs write (through `update`), and so do a reload (`reconfigure`) and shutdown (`save`), one at a time
under the write lock; scrapes read `snapshot` without locking. With a storage path the states survive
restarts (written atomically on every change). The state file's format is this module's; a result in it
is the kind's own JSON object (its `to_json` and `from_json`, as strict as N-central's answers), tagged
with the kind's name, so that a result is only ever read back by the kind that wrote it. The store knows
no kind: what it keeps is the collections it is given.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import portalocker

from exporter.collection import Result, Settings
from exporter.config import NCentralSettings
from exporter.errors import REASONS, os_reason
from exporter.files import NOFOLLOW, FileRefused, check_regular, not_regular, read_regular, size_text
from exporter.scrub import shown

log = logging.getLogger(__name__)

_STATE_VERSION = 2
# Version 1 kept every result's fields beside the run's, untagged, under this key.
_V1_ENTRIES = "reports"
# A stored timestamp later than now by more than this is implausible (a clock far off, or a doctored file).
MAX_CLOCK_SKEW = 300.0
# The largest state file read back, and so the largest written: far above the defaults' few MiB (5,000
# series per report, 20,000 customer series), and a bound on what a start-up reads (see README).
MAX_STATE_FILE = 64 * 2**20


@dataclass(frozen=True)
class CollectionState:
    """One collection's run outcomes and its kind's latest good result (opaque to the store)."""

    kind: str
    fingerprint: str
    result: Result | None = None
    last_success_time: float | None = None
    last_duration: float | None = None
    last_run_success: bool = False
    last_run_time: float | None = None
    last_reason: str | None = None
    last_error: str | None = None
    runs_total: int = 0
    failures: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(REASONS, 0)))

    def with_failure(self, reason: str) -> Mapping[str, int]:
        counts = dict(self.failures)
        counts[reason] = counts.get(reason, 0) + 1
        return MappingProxyType(counts)


Snapshot = Mapping[str, CollectionState]


def server_identity(settings: NCentralSettings) -> str:
    """Which N-central server and API user results come from: a digest of the URL (trailing `/` stripped)
    and of the JWT's subject (of the whole JWT if it has none). Never the token itself."""
    digest = hashlib.sha256()
    digest.update(settings.url.rstrip("/").encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(_token_identity(settings.token).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:24]


def _token_identity(token: str) -> str:
    """The JWT's `iss` and `sub` claims (the user, stable when the token is renewed) or the token's digest."""
    parts = token.split(".")
    if len(parts) == 3 and len(parts[1]) <= 8192:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error, RecursionError):
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("sub"), str) and claims["sub"]:
            return f"sub:{claims.get('iss')!s}:{claims['sub']}"
    return "token:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _fresh(collection: Settings) -> CollectionState:
    return CollectionState(kind=collection.kind, fingerprint=collection.fingerprint)


def _still_valid(collection: Settings, state: CollectionState | None) -> bool:
    """Whether `state` answers what `collection` asks: the same kind, asking N-central the same thing."""
    return state is not None and state.kind == collection.kind and state.fingerprint == collection.fingerprint


class Store:
    def __init__(
        self,
        collections: Iterable[Settings],
        path: str | None = None,
        *,
        server: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`server` (see `server_identity`) ties the stored results to one N-central server and API user.
        With a `path`, the state file is locked for the store's life (raises StateFileLocked if another
        exporter holds it)."""
        self._path = Path(path) if path else None
        self._write_lock = threading.Lock()
        self.write_failures = 0  # state writes that failed, for ncentral_patch_exporter_state_write_failures_total
        self._server = server
        self._wall = wall
        self._written: str | None = None  # digest of the text last written, to skip writing it again
        self._file_lock = StateFileLock(self._path) if self._path is not None else None
        stored_server, entries = self._load()
        if entries and server is not None and stored_server is not None and stored_server != server:
            log.warning(
                "the N-central server (URL or API user) differs from the one the stored results came from; "
                "dropping them and any report id in flight",
                extra={"path": str(self._path), "collections": sorted(entries)},
            )
            entries = {}
        now = self._wall()
        loaded: dict[str, CollectionState] = {}
        for collection in collections:
            raw = entries.get(collection.name)
            stored = self._read_entry(collection, raw, now) if raw is not None else None
            if stored is not None and stored.kind != collection.kind:
                log.info("stored result dropped: another kind of collection wrote it",
                         extra={"report": collection.name})
            elif stored is not None and stored.fingerprint != collection.fingerprint:
                log.info("stored result dropped: the report's filters changed", extra={"report": collection.name})
            if stored is not None:
                loaded[collection.name] = stored
        self.snapshot: Snapshot = MappingProxyType(self._kept(collections, loaded)[0])

    @staticmethod
    def _kept(
        collections: Iterable[Settings], current: Mapping[str, CollectionState]
    ) -> tuple[dict[str, CollectionState], list[str]]:
        """The state per collection: `current`'s where still valid, else a fresh one; and the fresh names."""
        states: dict[str, CollectionState] = {}
        fresh: list[str] = []
        for collection in collections:
            state = current.get(collection.name)
            if _still_valid(collection, state):
                assert state is not None
                states[collection.name] = state
            else:
                states[collection.name] = _fresh(collection)
                fresh.append(collection.name)
        return states, fresh

    def close(self) -> None:
        """Release the state file's lock; nothing is written after this."""
        with self._write_lock:
            if self._file_lock is not None:
                self._file_lock.release()

    def update(
        self, name: str, change: Callable[[CollectionState], CollectionState], *, fingerprint: str,
        server: str | None = None,
    ) -> bool:
        """Apply `change` to the collection's state; False (and nothing done) if the collection is gone or now
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

    def reconfigure(self, collections: Iterable[Settings], *, server: str | None = None) -> list[str]:
        """Keep the state of collections that still ask the same server for the same thing; returns the
        names started afresh. Writes the state file only if something changed."""
        with self._write_lock:
            server_changed = server is not None and self._server is not None and server != self._server
            if server_changed:
                log.warning(
                    "the N-central server (URL or API user) changed; dropping the stored results and any "
                    "report id in flight",
                    extra={"collections": sorted(self.snapshot)},
                )
            if server is not None:
                self._server = server
            states, fresh = self._kept(collections, {} if server_changed else self.snapshot)
            if states.keys() != self.snapshot.keys() or any(
                states[name] is not self.snapshot[name] for name in states
            ) or server_changed:
                self._swap(states)
            return fresh

    def save(self) -> None:
        with self._write_lock:
            self._persist(self.snapshot)

    def _swap(self, states: dict[str, CollectionState]) -> None:
        self.snapshot = MappingProxyType(states)
        self._persist(self.snapshot)

    # --- persistence ---

    def _persist(self, snapshot: Snapshot) -> None:
        if self._path is None or self._file_lock is None or not self._file_lock.held:
            return  # no state file, or closed: the lock may already be another exporter's
        document: dict[str, Any] = {"version": _STATE_VERSION}
        if self._server is not None:
            document["server"] = self._server
        document["collections"] = {name: _to_json(state) for name, state in snapshot.items()}
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
            _sync_directory(self._path.parent)
            self._written = digest.hexdigest()
        except (OSError, ValueError) as exc:
            error = os_reason(exc, detail=True)
            self.write_failures += 1
            log.error("cannot write the state file", extra={"path": str(self._path), "error": error})

    def _load(self) -> tuple[str | None, dict[str, Mapping[str, Any]]]:
        """The stored server identity and the entries per collection name, as written (version 1's in
        version 2's shape); an unreadable file is logged and read as empty."""
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
            version = document.get("version")
            if version not in (1, _STATE_VERSION):
                raise ValueError(f"unknown state file version {shown(version)}")
            entries = document[_V1_ENTRIES if version == 1 else "collections"]
            if not isinstance(entries, dict):
                raise TypeError("collections: expected an object")
            server = document.get("server")
            if server is not None and not isinstance(server, str):
                raise TypeError("server: expected text")
        except Exception as exc:  # a corrupt state file of any shape must never stop the exporter
            error = os_reason(exc) if isinstance(exc, FileRefused) else f"{type(exc).__name__}: {exc}"
            log.warning("ignoring unreadable state file", extra={"path": str(self._path), "error": error})
            return None, {}
        return server, {str(name): raw for name, raw in entries.items()}

    def _read_entry(self, collection: Settings, raw: object, now: float) -> CollectionState | None:
        """The stored state of `collection`'s name, its result read by `collection`'s kind if the kind wrote
        it; None, logged, if it cannot be read (one bad entry costs that entry only)."""
        try:
            return _from_json(collection, raw, now)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "ignoring an unreadable entry of the state file",
                extra={"path": str(self._path), "report": collection.name, "error": error[:300]},
            )
            return None


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
            # O_NOFOLLOW's ELOOP and a directory's EISDIR say in other words what lock_problem says.
            problem = lock_problem(self.path) or f"cannot create the lock file {self.path}: {os_reason(exc)}"
            raise StateFileLocked(f"{path}: {problem}") from None
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
            problem = lock_problem(self.path) or f"cannot lock {self.path}: {reason}"
            raise StateFileLocked(f"{path}: {problem}") from None

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None


def lock_problem(lock: Path) -> str | None:
    """Why `lock` cannot serve as the state file's lock file (a link, or something other than a regular
    file), or None: start-up and --check-config refuse it with the same words."""
    try:
        mode = os.lstat(lock).st_mode
    except OSError:
        return None  # absent (it is created) or unreadable (opening it says why)
    if stat.S_ISLNK(mode):
        return f"the lock file {lock} is a symbolic link; remove it (the exporter does not follow a link there)"
    kind = not_regular(mode)
    return f"the lock file {lock} is {kind}; remove it (the exporter keeps its lock in a file there)" if kind else None


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable. POSIX needs the directory synced; Windows (no O_DIRECTORY) cannot
    open a directory as a file, and NTFS journals the rename itself."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_storage_path(path: str) -> str | None:
    """Why the state file cannot be kept at `path`, or None. Start-up and --check-config refuse a path that
    fails, rather than log an error at every write; a missing directory is not created (a typo would
    otherwise scatter state files), deployments create it (Docker image, systemd StateDirectory)."""
    target = Path(path)
    if target.is_dir():
        return f"{path} is a directory; give the state file's path, e.g. {target / 'state.json'}"
    if target.exists() and (kind := not_regular(target.stat().st_mode)) is not None:
        return f"{path} is {kind}; give the path of a state file the exporter may replace"
    problem = lock_problem(target.with_name(target.name + ".lock"))
    if problem is not None:
        return problem
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


_RUN_KEYS = ("fingerprint", "last_success_time", "last_duration", "last_run_success", "last_run_time",
             "last_reason")


def _to_json(state: CollectionState) -> dict[str, Any]:
    # Error texts and failure counts are this process's, like the counters: not persisted.
    return {
        "kind": state.kind,
        "fingerprint": state.fingerprint,
        "last_success_time": state.last_success_time,
        "last_duration": state.last_duration,
        "last_run_success": state.last_run_success,
        "last_run_time": state.last_run_time,
        "last_reason": state.last_reason,
        "result": state.result.to_json() if state.result is not None else None,
    }


def seconds(value: object) -> float | None:
    """None, or a timestamp or duration in seconds: finite, not negative, before the year 5000."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e11:
        raise TypeError(f"expected seconds, got {shown(value)}")
    return float(value)


def _optional_str(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected text, got {shown(value)}")
    return value


def not_future(value: float | None, key: str, now: float) -> float | None:
    """`value`, unless it is a time later than `now` by more than the clock skew allowed (raises ValueError)."""
    if value is not None and value > now + MAX_CLOCK_SKEW:
        raise ValueError(f"{key}: {shown(value)} is in the future (now {now:.0f})")
    return value


def _from_json(collection: Settings, raw: Any, now: float) -> CollectionState:
    """An entry as `_to_json` wrote it, its result read by `collection`'s kind; a version 1 entry (no kind,
    the result's fields beside the run's) is taken as `collection`'s kind's."""
    if not isinstance(raw, Mapping):
        raise TypeError(f"expected an object, got {type(raw).__name__}")
    if "kind" in raw:
        kind, result = raw["kind"], raw.get("result")
    else:
        kind = collection.kind
        result = {key: value for key, value in raw.items() if key not in _RUN_KEYS and value is not None} or None
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected text, got {shown(kind)}")
    if result is not None and not isinstance(result, Mapping):
        raise TypeError(f"result: expected an object, got {type(result).__name__}")
    return CollectionState(
        kind=kind,
        fingerprint=str(raw["fingerprint"]),
        # Only the kind that wrote a result reads it; another kind's is dropped (see Store.__init__).
        result=collection.result_type.from_json(result, now) if result is not None and kind == collection.kind
        else None,
        last_success_time=not_future(seconds(raw.get("last_success_time")), "last_success_time", now),
        last_duration=seconds(raw.get("last_duration")),
        last_run_success=raw.get("last_run_success") is True,
        last_run_time=not_future(seconds(raw.get("last_run_time")), "last_run_time", now),
        last_reason=_optional_str(raw.get("last_reason")),
    )
