"""The customer scan: devices per customer and device class, and how many of them have an active issue on
a patch service. A second kind of collection next to the patch reports, on the same store, run metrics
and exposition cache, with its own N-central client and its own scheduler worker (reports never wait
behind a scan). Between pages and customers a scan checks for shutdown, a reload (it starts again with
the new settings) and its `timeout`.

One run: `GET /api/devices` paged, then `GET /api/org-units/{customerId}/active-issues` paged for each
customer that the include/exclude regexes keep, at most two calls in flight. A customer whose active
issues answer 403 or 404 keeps its last good counts (and is counted in `ncentral_customer_scan_errors_total`);
any other failure fails the run, and the last good result stays served.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.client import NCentralClient
from exporter.config import CUSTOMERS, CustomerSettings
from exporter.errors import (
    Forbidden,
    InternalError,
    InvalidResponse,
    NotSupported,
    ReportTimeout,
    Stopped,
    UpstreamError,
)
from exporter.labels import label_value
from exporter.live_client import ClientFactory, CollectionRun, default_client
from exporter.report import as_object
from exporter.scrub import shown
from exporter.workers import DaemonPool

if TYPE_CHECKING:
    from exporter.running_config import RunningConfig
    from exporter.store import ReportState, Store

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # the most N-central accepts; it may serve fewer, so paging follows totalPages
MAX_IN_FLIGHT = 2  # N-central limits concurrent calls per endpoint and answers 429 beyond
MAX_PAGES = 10_000  # a guard against an answer that never stops promising more pages
# Per-customer failures that do not fail the run: the customer is skipped and keeps its last counts.
CUSTOMER_ERROR_REASONS = (Forbidden.reason, NotSupported.reason)
UNKNOWN_CLASS = "Unknown"

T = TypeVar("T")


class CustomerCount(NamedTuple):
    customer_id: int
    customer: str
    device_class: str
    devices: int
    patch_issue_devices: int


@dataclass(frozen=True)
class CustomerData:
    """One scan's published counts, and the per-customer errors counted since the exporter started."""

    rows: tuple[CustomerCount, ...]
    scan_errors: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(CUSTOMER_ERROR_REASONS, 0))
    )

    def per_customer(self) -> list[tuple[int, str, int, int]]:
        """(customer_id, customer, devices, patch_issue_devices) summed over device classes."""
        totals: dict[tuple[int, str], list[int]] = {}
        for row in self.rows:
            entry = totals.setdefault((row.customer_id, row.customer), [0, 0])
            entry[0] += row.devices
            entry[1] += row.patch_issue_devices
        return [(cid, name, devices, issues) for (cid, name), (devices, issues) in totals.items()]


# --- parsing: N-central JSON → typed values (all validation of upstream data is here) ----------------


class Device(NamedTuple):
    device_id: int
    customer_id: int
    customer: str
    device_class: str


class Page(NamedTuple):
    items: list[Any]
    total_pages: int | None


def customer_data(rows: Iterable[Sequence[object]], where: str) -> CustomerData:
    """Counts from rows of plain values (the state file keeps them so), as strictly as N-central's answers:
    raises InvalidResponse, ValueError, TypeError or KeyError if they are not that."""
    counts = []
    for customer_id, customer, device_class, devices, issues in rows:
        count = _count(devices, where)
        counts.append(CustomerCount(
            _int(customer_id, where), label_value(customer, where), label_value(device_class, where), count,
            min(_count(issues, where), count),
        ))
    return CustomerData(rows=tuple(counts))


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise InvalidResponse(f"{where}: expected an integer, got {shown(value)}")
    return value


def _count(value: object, where: str) -> int:
    count = _int(value, where)
    if count < 0:
        raise InvalidResponse(f"{where}: count is negative: {count}")
    return count


def _optional_text(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    return label_value(value, where)


def parse_page(body: Mapping[str, Any], where: str) -> Page:
    """A paged answer. `totalPages` is what paging follows; the page size served may be smaller than the
    one asked for. Without `totalPages` (some list endpoints answer only data and totalItems), a page
    count is derived from `totalItems` and the size of this page."""
    items = body.get("data")
    if not isinstance(items, list):
        raise InvalidResponse(f"{where}: answer has no data list (got {shown(items)})")
    total_pages = body.get("totalPages")
    if total_pages is not None:
        pages = _count(total_pages, f"{where}: totalPages")
    elif body.get("totalItems") is not None and items:
        total_items = _count(body.get("totalItems"), f"{where}: totalItems")
        pages = -(-total_items // len(items))
    else:
        return Page(items, None)
    if pages > MAX_PAGES:
        raise InvalidResponse(f"{where}: implausible page count {pages}")
    return Page(items, pages)


def parse_device(raw: object, where: str) -> Device | None:
    """A device, or None for one that belongs to no customer (e.g. the service organisation's own)."""
    raw = as_object(raw, where)
    device_id = _int(raw.get("deviceId"), f"{where}.deviceId")
    if raw.get("customerId") is None:
        return None
    customer_id = _int(raw.get("customerId"), f"{where}.customerId")
    customer = _optional_text(raw.get("customerName"), f"{where}.customerName") or f"customer {customer_id}"
    device_class = _optional_text(raw.get("deviceClass"), f"{where}.deviceClass") or UNKNOWN_CLASS
    return Device(device_id, customer_id, customer, device_class)


def patch_issue_device(settings: CustomerSettings, raw: object, where: str) -> int | None:
    """The device id of an active issue on a patch service; None for any other issue."""
    raw = as_object(raw, where)
    service = _optional_text(raw.get("serviceName"), f"{where}.serviceName")
    if service is None or not settings.is_patch_service(service):
        return None
    return _int(raw.get("deviceId"), f"{where}.deviceId")


# --- the scan ----------------------------------------------------------------------------------------


class _Superseded(Exception):
    """A reload changed what the scan publishes or replaced its client: the scan starts again."""


@dataclass(frozen=True)
class _Devices:
    names: dict[int, str]  # customer id → name (the last one seen)
    classes: dict[int, dict[str, int]]  # customer id → device class → devices
    device_class: dict[int, tuple[int, str]]  # device id → (customer id, device class)


class CustomerScan(CollectionRun):
    def __init__(
        self,
        config: RunningConfig,
        store: Store,
        stop: threading.Event,
        *,
        client_factory: ClientFactory = default_client,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        """`config` is asked for the scan's settings at the start of each run. `max_in_flight` other than 2
        is for the benchmark's side-by-side baseline only."""
        # Each client has its own halt event (see LiveClient): a reload that replaces it halts its waits, and
        # the scan checks between pages and customers whether it was replaced, so a scan against the old
        # server stops early and starts again with the new one.
        super().__init__(config, store, stop, client_factory=client_factory, wall=wall, monotonic=monotonic)
        self._max_in_flight = max_in_flight

    def run(self) -> bool:
        """Scan once; True on success. Never raises for N-central's faults. A reload that changes what the
        scan publishes or the N-central settings during the scan starts it again at once with the new ones."""
        while True:
            config, client = self._clients.current()
            settings = config.customers
            if settings is None or self._stop.is_set():
                return False
            outcome = self._attempt(settings, client)
            if outcome is not None and not (outcome is False and self._replaced(client)):
                return outcome
            halt = self._clients.halt_of(client)
            if self._running.get().customers is None or self._stop.is_set() or (halt is not None and halt.is_set()):
                return False  # gone, stopping, or halted without a reload: nothing to start again
            log.info("configuration reloaded during the customer scan; starting it again",
                     extra={"report": CUSTOMERS})

    def _check(self, settings: CustomerSettings, client: NCentralClient, deadline: float) -> None:
        """Before each page and each customer: stop on shutdown, give way to a reload, keep the deadline."""
        if self._stop.is_set():
            raise Stopped
        current = self._running.get().customers
        if current is None or current.fingerprint != settings.fingerprint or self._replaced(client):
            raise _Superseded
        if self._monotonic() >= deadline:
            raise ReportTimeout(f"customer scan not done within its {settings.timeout:g}s timeout")

    def _attempt(self, settings: CustomerSettings, client: NCentralClient) -> bool | None:
        """One scan: True or False as recorded in the store; None when a reload superseded it (nothing
        recorded) or shutdown stopped it."""
        started = self._monotonic()
        # Retries and backoffs stay within the scan's timeout; so do the pages and customers not yet asked.
        deadline = started + settings.timeout
        check = partial(self._check, settings, client, deadline)
        try:
            try:
                with DaemonPool(self._max_in_flight, "customer-scan") as pool:
                    devices = self._devices(client, pool, deadline, check, settings)
                    wanted = sorted(cid for cid, name in devices.names.items() if settings.wanted(name))
                    issues, failed = self._issues(client, pool, settings, wanted, devices, deadline, check)
                return self._record_success(
                    settings, client, devices, wanted, issues, failed, self._monotonic() - started
                )
            except (Stopped, _Superseded):
                raise
            except UpstreamError as exc:
                failure = exc
            except Exception as exc:  # a bug must not stop the schedule or lose the run's count
                log.exception("unexpected error in the customer scan", extra={"report": CUSTOMERS})
                failure = InternalError(f"unexpected {type(exc).__name__} in the exporter (see the log)")
            return self._record_failure(settings, client, failure, self._monotonic() - started)
        except (Stopped, _Superseded):
            if self._stop.is_set():
                log.info("customer scan interrupted by shutdown", extra={"report": CUSTOMERS})
                return False
            return None  # a reload halted the client or changed the settings: the caller starts again

    # --- calls ---

    def _pages(
        self,
        client: NCentralClient,
        path: str,
        deadline: float,
        parse: Callable[[Any, str], T],
        pool: Executor | None,
        check: Callable[[], None],
    ) -> Iterator[T]:
        """Every item of a paged list, parsed: page 1, then the pages `totalPages` promises (through `pool`
        when given, else one after the other). Each page is parsed where it is fetched, so the raw JSON of
        only a few pages is ever alive at once. `check` runs before each page."""

        def page(number: int) -> tuple[list[T], int | None]:
            check()
            where = f"GET {path}"
            separator = "&" if "?" in path else "?"
            try:
                body = client.get(f"{path}{separator}pageNumber={number}&pageSize={PAGE_SIZE}", deadline)
            # The client's 403/404 texts speak of the patch reports; these say what they mean here.
            except NotSupported as exc:
                raise NotSupported(f"{where}: HTTP 404 (this N-central has no such endpoint or org unit)",
                                   status=exc.status) from None
            except Forbidden as exc:
                raise Forbidden(f"{where}: HTTP 403 (the API user may not read this; create it at the SO "
                                "level with a role that can view devices and their status)",
                                status=exc.status) from None
            items, total_pages = parse_page(body, f"{where} page {number}")
            return [parse(item, f"{where} page {number} data[{i}]") for i, item in enumerate(items)], total_pages

        first, total_pages = page(1)
        yield from first
        if total_pages is None or total_pages <= 1:
            return
        numbers = range(2, total_pages + 1)
        if pool is None:
            for number in numbers:
                items, _ = page(number)
                if not items:
                    return  # the list shrank while we paged: nothing more to read
                yield from items
            return
        for items, _ in _in_order(pool, [partial(page, number) for number in numbers], self._max_in_flight * 2):
            yield from items

    def _devices(
        self,
        client: NCentralClient,
        pool: Executor,
        deadline: float,
        check: Callable[[], None],
        settings: CustomerSettings,
    ) -> _Devices:
        """The device list, refused as `invalid_response` the moment it holds more devices than
        `max_devices` or would publish more series than `max_series` (memory stays bounded)."""
        names: dict[int, str] = {}
        classes: dict[int, dict[str, int]] = {}
        device_class: dict[int, tuple[int, str]] = {}
        skipped = 0
        # Series published as listed so far: 2 per device class of each customer whose name (the last one
        # seen, which is the one published) is kept; a renamed customer moves all its classes in or out.
        series = 0
        for device in self._pages(client, "/api/devices", deadline, parse_device, pool, check):
            if device is None:
                skipped += 1
                continue
            if device.device_id in device_class:
                continue  # the list moved between pages: a device seen twice counts once
            per_class = classes.setdefault(device.customer_id, {})
            previous = names.get(device.customer_id)
            if previous != device.customer:
                names[device.customer_id] = device.customer
                kept_before = previous is not None and settings.wanted(previous)
                if settings.wanted(device.customer) != kept_before:
                    series += (-2 if kept_before else 2) * len(per_class)
            if device.device_class not in per_class and settings.wanted(device.customer):
                series += 2
            if series > settings.max_series:
                raise InvalidResponse(
                    f"GET /api/devices: the scan would publish more than customers.max_series="
                    f"{settings.max_series} series (2 per customer and device class); raise it or narrow "
                    "customers.include/exclude"
                )
            per_class[device.device_class] = per_class.get(device.device_class, 0) + 1
            device_class[device.device_id] = (device.customer_id, sys.intern(device.device_class))
            if len(device_class) > settings.max_devices:
                raise InvalidResponse(
                    f"GET /api/devices: more than customers.max_devices={settings.max_devices} devices; raise it"
                )
        if skipped:
            log.debug("devices without a customer left out", extra={"report": CUSTOMERS, "devices": skipped})
        return _Devices(names, classes, device_class)

    def _issues(
        self,
        client: NCentralClient,
        pool: Executor,
        settings: CustomerSettings,
        wanted: list[int],
        devices: _Devices,
        deadline: float,
        check: Callable[[], None],
    ) -> tuple[dict[int, set[int]], dict[int, UpstreamError]]:
        """Per customer, its devices with an active issue on a patch service; and the customers whose
        active issues were refused (403/404)."""

        def one(customer_id: int) -> set[int] | UpstreamError:
            path = f"/api/org-units/{customer_id}/active-issues"
            found: set[int] = set()
            try:
                parse = partial(patch_issue_device, settings)
                for device_id in self._pages(client, path, deadline, parse, None, check):
                    # Only the customer's own devices, as listed: an issue may name a device that left.
                    if device_id is not None and devices.device_class.get(device_id, (None,))[0] == customer_id:
                        found.add(device_id)
            except (Forbidden, NotSupported) as exc:
                return exc
            return found

        issues: dict[int, set[int]] = {}
        failed: dict[int, UpstreamError] = {}
        tasks = [partial(one, customer_id) for customer_id in wanted]
        for customer_id, result in zip(wanted, _in_order(pool, tasks, self._max_in_flight * 2), strict=True):
            if isinstance(result, UpstreamError):
                failed[customer_id] = result
                log.warning(
                    "customer's active issues refused; keeping its last counts",
                    extra={
                        "report": CUSTOMERS, "customer_id": customer_id, "customer": devices.names[customer_id],
                        "reason": result.reason, "status": result.status if result.status is not None else "none",
                    },
                )
            else:
                issues[customer_id] = result
        return issues, failed

    # --- outcome ---

    def _record_success(
        self,
        settings: CustomerSettings,
        client: NCentralClient,
        devices: _Devices,
        wanted: list[int],
        issues: dict[int, set[int]],
        failed: dict[int, UpstreamError],
        duration: float,
    ) -> bool | None:
        """True once the store took the result; None if a reload meanwhile made it refuse it."""
        now = self._wall()
        state = self._store.snapshot.get(CUSTOMERS)
        previous = state.customers if state is not None else None
        last_good: dict[int, dict[str, int]] = {}
        for row in previous.rows if previous is not None else ():
            last_good.setdefault(row.customer_id, {})[row.device_class] = row.patch_issue_devices
        rows: list[CustomerCount] = []
        for customer_id in wanted:
            if customer_id in issues:
                problem: dict[str, int] = {}
                for device_id in issues[customer_id]:
                    device_class = devices.device_class[device_id][1]
                    problem[device_class] = problem.get(device_class, 0) + 1
            elif customer_id in last_good:
                problem = last_good[customer_id]
            else:
                continue  # refused and never scanned: no count is better than a made-up 0
            for device_class, count in sorted(devices.classes[customer_id].items()):
                rows.append(CustomerCount(
                    customer_id, devices.names[customer_id], device_class, count,
                    min(problem.get(device_class, 0), count),
                ))
        errors = dict(previous.scan_errors if previous is not None else CustomerData(()).scan_errors)
        for error in failed.values():
            errors[error.reason] = errors.get(error.reason, 0) + 1
        data = CustomerData(tuple(rows), MappingProxyType(errors))

        def change(state: ReportState) -> ReportState:
            return replace(
                state, customers=data, last_success_time=now, last_duration=duration, last_run_success=True,
                last_run_time=now, last_reason=None, last_error=None, runs_total=state.runs_total + 1,
            )

        if not self._update(settings, client, change):
            return None
        log.info(
            "customer scan succeeded",
            extra={
                "report": CUSTOMERS, "result": "success", "duration_seconds": round(duration, 3),
                "customers": len(wanted), "devices": len(devices.device_class), "customers_refused": len(failed),
            },
        )
        return True

    def _record_failure(
        self, settings: CustomerSettings, client: NCentralClient, exc: UpstreamError, duration: float
    ) -> bool | None:
        """False once the store took the failure; None if a reload meanwhile made it refuse it."""
        now = self._wall()

        def change(state: ReportState) -> ReportState:
            return replace(
                state, last_run_success=False, last_run_time=now, last_reason=exc.reason, last_error=exc.message,
                runs_total=state.runs_total + 1, failures=state.with_failure(exc.reason),
            )

        if not self._update(settings, client, change):
            return None
        log.warning(
            "customer scan failed",
            extra={
                "report": CUSTOMERS, "result": "failure", "reason": exc.reason,
                "status": exc.status if exc.status is not None else "none",
                "duration_seconds": round(duration, 3), "error": exc.message,
            },
        )
        return False

    def _update(
        self, settings: CustomerSettings, client: NCentralClient, change: Callable[[ReportState], ReportState]
    ) -> bool:
        """Whether the store took the change: it refuses it when a reload changed the scan's settings or the
        N-central server meanwhile."""
        if not self._record(settings, client, change):
            log.info("customer scan settings or N-central server changed during the run; its result is dropped",
                     extra={"report": CUSTOMERS})
            return False
        return True


def _in_order(pool: Executor, tasks: Sequence[Callable[[], T]], window: int) -> Iterator[T]:
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


# --- metrics -----------------------------------------------------------------------------------------


def families(state: ReportState | None) -> list[Metric]:
    """The customer metrics from the scan's state in the store; none while the scan has no data."""
    if state is None or state.customers is None:
        return []
    labels = ["customer_id", "customer", "device_class"]
    devices = GaugeMetricFamily(
        "ncentral_customer_devices",
        "Devices N-central manages, per customer and device class, as of the last successful customer scan.",
        labels=labels,
    )
    issues = GaugeMetricFamily(
        "ncentral_customer_patch_issue_devices",
        "Devices with at least one active issue on a patch service, per customer and device class.",
        labels=labels,
    )
    errors = CounterMetricFamily(
        "ncentral_customer_scan_errors",
        "Customers whose active issues N-central refused during a scan (403, 404), by reason.",
        labels=["reason"],
    )
    for row in state.customers.rows:
        values = [str(row.customer_id), row.customer, row.device_class]
        devices.add_metric(values, row.devices)
        issues.add_metric(values, row.patch_issue_devices)
    for reason, count in state.customers.scan_errors.items():
        errors.add_metric([reason], count)
    return [devices, issues, errors]
