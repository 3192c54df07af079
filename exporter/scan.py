"""What every scan-style collection kind (the customer scan, the patch status scan) is built on: paged
GETs with at most two calls in flight, and a run that checks for shutdown, a reload (it starts again with
the new settings) and its `timeout` between calls, records one success or failure in the store, and never
raises for N-central's faults.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from exporter.client import NCentralClient, on_the_wire
from exporter.collection import Settings
from exporter.errors import (
    Forbidden,
    InternalError,
    InvalidResponse,
    NotSupported,
    ReportTimeout,
    Stopped,
    UpstreamError,
)
from exporter.live_client import CollectionRun
from exporter.scrub import shown
from exporter.workers import DaemonPool

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.store import CollectionState


PAGE_SIZE = 1000  # the most N-central accepts; it may serve fewer, so paging follows totalPages
MAX_IN_FLIGHT = 2  # N-central limits concurrent calls per endpoint and answers 429 beyond
MAX_PAGES = 10_000  # a guard against an answer that never stops promising more pages

T = TypeVar("T")


class ScanSettings(Settings, Protocol):
    @property
    def timeout(self) -> float: ...


S = TypeVar("S", bound=ScanSettings)


class Page(NamedTuple):
    items: list[Any]
    total_pages: int | None


def parse_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise InvalidResponse(f"{where}: expected an integer, got {shown(value)}")
    return value


def parse_count(value: object, where: str) -> int:
    count = parse_int(value, where)
    if count < 0:
        raise InvalidResponse(f"{where}: count is negative: {count}")
    return count


def parse_page(body: Mapping[str, Any], where: str) -> Page:
    """A paged answer. `totalPages` is what paging follows; the page size served may be smaller than the
    one asked for. Without `totalPages` (some list endpoints answer only data and totalItems), a page
    count is derived from `totalItems` and the size of this page."""
    items = body.get("data")
    if not isinstance(items, list):
        raise InvalidResponse(f"{where}: answer has no data list (got {shown(items)})")
    total_pages = body.get("totalPages")
    if total_pages is not None:
        pages = parse_count(total_pages, f"{where}: totalPages")
    elif body.get("totalItems") is not None and items:
        total_items = parse_count(body.get("totalItems"), f"{where}: totalItems")
        pages = -(-total_items // len(items))
    else:
        return Page(items, None)
    if pages > MAX_PAGES:
        raise InvalidResponse(f"{where}: implausible page count {pages}")
    return Page(items, pages)


def in_order(pool: Executor, tasks: Iterable[Callable[[], T]], window: int) -> Iterator[T]:
    """Run `tasks` on `pool` and yield their results in order, with at most `window` results pending (a
    bound on memory); on the first failure the tasks not yet started are cancelled (those running finish)
    and the failure is raised."""
    futures: deque[Future[T]] = deque()
    queued = iter(tasks)
    try:
        for task in itertools.islice(queued, window):
            futures.append(pool.submit(task))
        while futures:
            result = futures.popleft().result()
            for task in itertools.islice(queued, 1):
                futures.append(pool.submit(task))
            yield result
    finally:
        for future in futures:
            future.cancel()
        for future in futures:
            if not future.cancelled():
                future.exception()  # wait for it: no call may outlive the run


class Superseded(Exception):
    """A reload changed what the scan publishes or replaced its client: the scan starts again."""


@dataclass(frozen=True)
class Calls:
    """One scan's calls to N-central: its client, its pool of workers (one more than the calls `wire` lets
    on the wire at once, so one call is built or parsed while the others wait for N-central), its deadline
    and the check that runs before each call."""

    client: NCentralClient
    pool: Executor
    wire: threading.Semaphore
    deadline: float
    check: Callable[[], None]
    window: int  # results pending at most (twice the calls in flight)

    def get(self, path: str) -> dict[str, Any]:
        """One GET, checked before it is built and again once it has a slot on the wire (a worker may wait
        for one while a shutdown or reload comes). The client's 403/404 texts speak of the patch reports;
        these say what they mean here."""
        self.check()
        where = f"GET {path.partition('?')[0]}"
        try:
            with on_the_wire(self.wire, self.check):
                return self.client.get(path, self.deadline)
        except NotSupported as exc:
            raise NotSupported(f"{where}: HTTP 404 (this N-central has no such endpoint, org unit or device)",
                               status=exc.status) from None
        except Forbidden as exc:
            raise Forbidden(f"{where}: HTTP 403 (the API user may not read this; create it at the SO "
                            "level with a role that can view devices and their status)",
                            status=exc.status) from None

    def pages(self, path: str, parse: Callable[[Any, str], T], *, parallel: bool = True) -> Iterator[T]:
        """Every item of a paged list, parsed: page 1, then the pages `totalPages` promises (through the pool
        when `parallel`, else one after the other). Each page is parsed where it is fetched, so the raw JSON
        of only a few pages is ever alive at once."""

        def page(number: int) -> tuple[list[T], int | None]:
            where = f"GET {path}"
            separator = "&" if "?" in path else "?"
            body = self.get(f"{path}{separator}pageNumber={number}&pageSize={PAGE_SIZE}")
            items, total_pages = parse_page(body, f"{where} page {number}")
            return [parse(item, f"{where} page {number} data[{i}]") for i, item in enumerate(items)], total_pages

        first, total_pages = page(1)
        yield from first
        if total_pages is None or total_pages <= 1:
            return
        numbers = range(2, total_pages + 1)
        if not parallel:
            for number in numbers:
                items, _ = page(number)
                if not items:
                    return  # the list shrank while we paged: nothing more to read
                yield from items
            return
        for items, _ in self.in_order([partial(page, number) for number in numbers]):
            yield from items

    def in_order(self, tasks: Iterable[Callable[[], T]]) -> Iterator[T]:
        return in_order(self.pool, tasks, self.window)


class Scan(CollectionRun, Generic[S]):
    """A run of one scan-style kind: `collect` makes the calls and records the success; this class starts
    it again when a reload supersedes it and records its failure. Each client has its own halt event (see
    LiveClient): a reload that replaces it halts its waits, and the scan checks between calls whether it was
    replaced, so a scan against the old server stops early and starts again with the new one."""

    title: ClassVar[str]  # how logs name it, e.g. "customer scan"

    # Calls in flight at most; other than 2 only for the benchmarks' one-at-a-time baselines.
    max_in_flight: int = MAX_IN_FLIGHT

    @property
    def _log(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)  # a kind's lines come from its own module

    def settings(self, config: Config) -> S | None:
        """The scan's settings in `config`; None when it is off."""
        raise NotImplementedError

    def collect(self, settings: S, calls: Calls, started: float) -> bool | None:
        """Make the scan's calls and record its success (see `succeeded`); raise UpstreamError to fail."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    def run(self, name: str = "") -> bool:
        """Scan once; True on success. Never raises for N-central's faults. A reload that changes what the
        scan publishes or the N-central settings during the scan starts it again at once with the new ones."""
        while True:
            config, client = self._clients.current()
            settings = self.settings(config)
            if settings is None or self._stop.is_set():
                return False
            outcome = self._attempt(settings, client)
            if outcome is not None and not (outcome is False and self._replaced(client)):
                return outcome
            halt = self._clients.halt_of(client)
            if self.settings(self._running.get()) is None or self._stop.is_set() or (
                halt is not None and halt.is_set()
            ):
                return False  # gone, stopping, or halted without a reload: nothing to start again
            self._log.info(f"configuration reloaded during the {self.title}; starting it again",
                     extra={"report": self.name})

    def _check(self, settings: S, client: NCentralClient, deadline: float) -> None:
        """Before each call: stop on shutdown, give way to a reload, keep the deadline."""
        if self._stop.is_set():
            raise Stopped
        current = self.settings(self._running.get())
        if current is None or current.fingerprint != settings.fingerprint or self._replaced(client):
            raise Superseded
        if self._monotonic() >= deadline:
            raise ReportTimeout(f"{self.title} not done within its {settings.timeout:g}s timeout")

    def _attempt(self, settings: S, client: NCentralClient) -> bool | None:
        """One scan: True or False as recorded in the store; None when a reload superseded it (nothing
        recorded) or shutdown stopped it."""
        started = self._monotonic()
        # Retries and backoffs stay within the scan's timeout; so do the calls not yet made.
        deadline = started + settings.timeout
        check = partial(self._check, settings, client, deadline)
        try:
            try:
                with DaemonPool(self.max_in_flight + 1, self.title.replace(" ", "-")) as pool:
                    wire = threading.BoundedSemaphore(self.max_in_flight)
                    calls = Calls(client, pool, wire, deadline, check, self.max_in_flight * 2)
                    return self.collect(settings, calls, started)
            except (Stopped, Superseded):
                raise
            except UpstreamError as exc:
                failure = exc
            except Exception as exc:  # a bug must not stop the schedule or lose the run's count
                self._log.exception(f"unexpected error in the {self.title}", extra={"report": self.name})
                failure = InternalError(f"unexpected {type(exc).__name__} in the exporter (see the log)")
            return self._failed(settings, client, failure, self._monotonic() - started)
        except (Stopped, Superseded):
            if self._stop.is_set():
                self._log.info(f"{self.title} interrupted by shutdown", extra={"report": self.name})
                return False
            return None  # a reload halted the client or changed the settings: the caller starts again

    def succeeded(
        self, settings: S, client: NCentralClient, started: float, result: Callable[[CollectionState], CollectionState],
        extra: Mapping[str, object],
    ) -> bool | None:
        """Record a success whose result `result` puts in the state: True once the store took it; None if
        a reload meanwhile made it refuse it."""
        now = self._wall()
        duration = self._monotonic() - started

        def change(state: CollectionState) -> CollectionState:
            return replace(
                result(state), last_success_time=now, last_duration=duration, last_run_success=True,
                last_run_time=now, last_reason=None, last_error=None, runs_total=state.runs_total + 1,
            )

        if not self._update(settings, client, change):
            return None
        self._log.info(f"{self.title} succeeded", extra={
            "report": self.name, "result": "success", "duration_seconds": round(duration, 3), **extra,
        })
        return True

    def _failed(self, settings: S, client: NCentralClient, exc: UpstreamError, duration: float) -> bool | None:
        """False once the store took the failure; None if a reload meanwhile made it refuse it."""
        now = self._wall()

        def change(state: CollectionState) -> CollectionState:
            return replace(
                state, last_run_success=False, last_run_time=now, last_reason=exc.reason, last_error=exc.message,
                runs_total=state.runs_total + 1, failures=state.with_failure(exc.reason),
            )

        if not self._update(settings, client, change):
            return None
        self._log.warning(f"{self.title} failed", extra={
            "report": self.name, "result": "failure", "reason": exc.reason,
            "status": exc.status if exc.status is not None else "none",
            "duration_seconds": round(duration, 3), "error": exc.message,
        })
        return False

    def _update(
        self, settings: S, client: NCentralClient, change: Callable[[CollectionState], CollectionState]
    ) -> bool:
        """Whether the store took the change: it refuses it when a reload changed the scan's settings or the
        N-central server meanwhile."""
        if not self._record(settings, client, change):
            self._log.info(f"{self.title} settings or N-central server changed during the run; its result is dropped",
                     extra={"report": self.name})
            return False
        return True
