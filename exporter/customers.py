"""The customer scan: devices per customer and device class, how many of them have an active issue on a
patch service, how many agents stopped checking in (stale), and devices per operating system with whether
its vendor still supports it (end-of-life). A second kind of collection next to the patch reports, on the
same store, run metrics and exposition cache, with its own N-central client and its own scheduler worker
(reports never wait behind a scan). Between pages and customers a scan checks for shutdown, a reload (it
starts again with the new settings) and its `timeout`.

One run: `GET /api/devices` paged, then `GET /api/org-units/{customerId}/active-issues` paged for each
customer that the include/exclude regexes keep, at most two calls in flight. A customer whose active
issues answer 403 or 404 keeps its last good patch counts (and is counted in
`ncentral_customer_scan_errors_total`); its device, stale and OS counts come from the device list and are
current. Any other failure fails the run, and the last good result stays served.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
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
from exporter.lifecycle import is_end_of_life
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
UNKNOWN_OS = "unknown"
# Series a scan publishes: per customer and device class (devices, patch issue devices, stale devices),
# and per customer and operating system.
SERIES_PER_CLASS = 3
SERIES_PER_OS = 1

T = TypeVar("T")


class CustomerCount(NamedTuple):
    customer_id: int
    customer: str
    device_class: str
    devices: int
    patch_issue_devices: int | None  # None: the customer's active issues were refused and never read
    stale_devices: int


class OsCount(NamedTuple):
    customer_id: int
    customer: str
    os: str
    end_of_life: bool  # as of the scan
    devices: int


class CustomerTotals(NamedTuple):
    customer_id: int
    customer: str
    devices: int
    patch_issue_devices: int | None
    stale_devices: int
    end_of_life_devices: int


@dataclass(frozen=True)
class CustomerData:
    """One scan's published counts, and the per-customer errors counted since the exporter started."""

    rows: tuple[CustomerCount, ...]
    scan_errors: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(CUSTOMER_ERROR_REASONS, 0))
    )
    systems: tuple[OsCount, ...] = ()

    def per_customer(self) -> list[CustomerTotals]:
        """Each customer's counts summed over device classes and operating systems."""
        totals: dict[int, CustomerTotals] = {}
        for row in self.rows:
            entry = totals.get(row.customer_id) or CustomerTotals(row.customer_id, row.customer, 0, None, 0, 0)
            issues = entry.patch_issue_devices
            if row.patch_issue_devices is not None:
                issues = (issues or 0) + row.patch_issue_devices
            totals[row.customer_id] = entry._replace(
                devices=entry.devices + row.devices, patch_issue_devices=issues,
                stale_devices=entry.stale_devices + row.stale_devices,
            )
        for system in self.systems:
            if system.end_of_life and system.customer_id in totals:
                entry = totals[system.customer_id]
                totals[system.customer_id] = entry._replace(
                    end_of_life_devices=entry.end_of_life_devices + system.devices
                )
        return list(totals.values())


# --- parsing: N-central JSON → typed values (all validation of upstream data is here) ----------------


class Device(NamedTuple):
    device_id: int
    customer_id: int
    customer: str
    device_class: str
    os: str
    last_checkin: float | None  # seconds since the epoch; None: never checked in, or not readable
    unreadable_checkin: str | None = None  # the value as shown in a log, when it could not be read


class Page(NamedTuple):
    items: list[Any]
    total_pages: int | None


def customer_data(
    rows: Iterable[Sequence[object]], systems: Iterable[Sequence[object]], where: str
) -> CustomerData:
    """Counts from rows of plain values (the state file keeps them so), as strictly as N-central's answers:
    raises InvalidResponse, ValueError, TypeError or KeyError if they are not that."""
    counts = []
    for customer_id, customer, device_class, devices, issues, stale in rows:
        count = _count(devices, where)
        counts.append(CustomerCount(
            _int(customer_id, where), label_value(customer, where), label_value(device_class, where), count,
            min(_count(issues, where), count) if issues is not None else None, min(_count(stale, where), count),
        ))
    os_counts = []
    for customer_id, customer, os_name, end_of_life, devices in systems:
        if not isinstance(end_of_life, bool):
            raise InvalidResponse(f"{where}: expected true or false, got {shown(end_of_life)}")
        os_counts.append(OsCount(
            _int(customer_id, where), label_value(customer, where), label_value(os_name, where), end_of_life,
            _count(devices, where),
        ))
    return CustomerData(rows=tuple(counts), systems=tuple(os_counts))


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


# RFC 3339's date-time (a space for the T, as RFC 3339 allows); the offset may be missing (then it is UTC).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))?", re.ASCII
)


def checkin_time(value: object) -> float | None:
    """`lastApplianceCheckinTime` as seconds since the epoch; None when null or absent (never checked in).
    Raises ValueError for a value that is not an RFC 3339 date-time."""
    if value is None:
        return None
    match = _DATE_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    leap = second == 60  # a leap second: the same instant as the next second's start
    try:
        zone = dt.UTC
        if match.group(9) is not None:
            offset = dt.timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
            zone = dt.timezone(-offset if match.group(9) == "-" else offset)
        stamp = dt.datetime(year, month, day, hour, minute, second - leap, tzinfo=zone).timestamp()
    except (ValueError, OverflowError):
        raise ValueError("not an RFC 3339 date-time: a field is out of range") from None
    return stamp + leap + (float(match.group(7)) if match.group(7) else 0.0)


def parse_device(raw: object, where: str) -> Device | None:
    """A device, or None for one that belongs to no customer (e.g. the service organisation's own). A
    check-in time that cannot be read is kept as `unreadable_checkin` (the device counts as stale): the
    rest of the device is still good."""
    raw = as_object(raw, where)
    device_id = _int(raw.get("deviceId"), f"{where}.deviceId")
    if raw.get("customerId") is None:
        return None
    customer_id = _int(raw.get("customerId"), f"{where}.customerId")
    customer = _optional_text(raw.get("customerName"), f"{where}.customerName") or f"customer {customer_id}"
    device_class = _optional_text(raw.get("deviceClass"), f"{where}.deviceClass") or UNKNOWN_CLASS
    os_name = _optional_text(raw.get("supportedOs"), f"{where}.supportedOs") or UNKNOWN_OS
    checkin = raw.get("lastApplianceCheckinTime")
    try:
        return Device(device_id, customer_id, customer, device_class, os_name, checkin_time(checkin))
    except ValueError:
        return Device(device_id, customer_id, customer, device_class, os_name, None, shown(checkin))


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


@dataclass
class DeviceTally:
    """The device list counted as it is paged: per customer its name, per device class its devices and
    stale devices, per operating system its devices; and each device's customer and class (to place its
    active issues). A device seen twice (the list moved between pages) counts once."""

    now: float  # when the scan started: an agent silent for more than `stale_after` before it is stale
    stale_after: float
    names: dict[int, str] = field(default_factory=dict)  # customer id → name (the last one seen)
    classes: dict[int, dict[str, list[int]]] = field(default_factory=dict)  # → class → [devices, stale]
    systems: dict[int, dict[str, int]] = field(default_factory=dict)  # customer id → OS → devices
    device_class: dict[int, tuple[int, str]] = field(default_factory=dict)  # device id → (customer, class)

    def add(self, device: Device) -> None:
        """Count `device` (once: a device seen before is left as counted)."""
        if device.device_id in self.device_class:
            return
        self.names[device.customer_id] = device.customer
        per_class = self.classes.setdefault(device.customer_id, {})
        per_os = self.systems.setdefault(device.customer_id, {})
        device_class = sys.intern(device.device_class)
        counts = per_class.setdefault(device_class, [0, 0])
        counts[0] += 1
        counts[1] += self.is_stale(device)
        os_name = sys.intern(device.os)
        per_os[os_name] = per_os.get(os_name, 0) + 1
        self.device_class[device.device_id] = (device.customer_id, device_class)

    def series_of(self, customer_id: int) -> int:
        """The series the customer's counts so far would publish."""
        return (SERIES_PER_CLASS * len(self.classes.get(customer_id, ())) +
                SERIES_PER_OS * len(self.systems.get(customer_id, ())))

    def is_stale(self, device: Device) -> bool:
        """Never checked in, a check-in time that cannot be read, or one more than `stale_after` before the
        scan; a time in the future (the clocks disagree) is not stale."""
        return device.last_checkin is None or self.now - device.last_checkin > self.stale_after


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
        started, scanned_at = self._monotonic(), self._wall()
        # Retries and backoffs stay within the scan's timeout; so do the pages and customers not yet asked.
        deadline = started + settings.timeout
        check = partial(self._check, settings, client, deadline)
        try:
            try:
                with DaemonPool(self._max_in_flight, "customer-scan") as pool:
                    devices = self._devices(client, pool, deadline, check, settings, scanned_at)
                    wanted = sorted(cid for cid, name in devices.names.items() if settings.wanted(name))
                    issues, failed = self._issues(client, pool, settings, wanted, devices, deadline, check)
                return self._record_success(
                    settings, client, devices, wanted, issues, failed, scanned_at, self._monotonic() - started
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
        now: float,
    ) -> DeviceTally:
        """The device list counted, refused as `invalid_response` the moment it holds more devices than
        `max_devices` or would publish more series than `max_series` (memory stays bounded)."""
        tally = DeviceTally(now, settings.stale_after)
        skipped = 0
        # Series published as listed so far by the customers whose name (the last one seen, which is the one
        # published) is kept; a renamed customer moves all its series in or out.
        series = 0
        unreadable, example = 0, ""  # check-in times of the customers kept that could not be read
        for device in self._pages(client, "/api/devices", deadline, parse_device, pool, check):
            if device is None:
                skipped += 1
                continue
            if device.device_id in tally.device_class:
                continue  # the list moved between pages: a device seen twice counts once
            previous = tally.names.get(device.customer_id)
            before = tally.series_of(device.customer_id)
            tally.add(device)
            kept = settings.wanted(device.customer)
            kept_before = kept if previous == device.customer else previous is not None and settings.wanted(previous)
            series += (tally.series_of(device.customer_id) if kept else 0) - (before if kept_before else 0)
            if device.unreadable_checkin is not None and kept:
                unreadable, example = unreadable + 1, example or device.unreadable_checkin
            if series > settings.max_series:
                raise InvalidResponse(
                    f"GET /api/devices: the scan would publish more than customers.max_series="
                    f"{settings.max_series} series ({SERIES_PER_CLASS} per customer and device class, "
                    f"{SERIES_PER_OS} per customer and operating system); raise it or narrow "
                    "customers.include/exclude"
                )
            if len(tally.device_class) > settings.max_devices:
                raise InvalidResponse(
                    f"GET /api/devices: more than customers.max_devices={settings.max_devices} devices; raise it"
                )
        if skipped:
            log.debug("devices without a customer left out", extra={"report": CUSTOMERS, "devices": skipped})
        if unreadable:
            log.warning(
                "devices whose last check-in time cannot be read are counted as stale",
                extra={"report": CUSTOMERS, "devices": unreadable, "example": example},
            )
        return tally

    def _issues(
        self,
        client: NCentralClient,
        pool: Executor,
        settings: CustomerSettings,
        wanted: list[int],
        devices: DeviceTally,
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
        devices: DeviceTally,
        wanted: list[int],
        issues: dict[int, set[int]],
        failed: dict[int, UpstreamError],
        scanned_at: float,
        duration: float,
    ) -> bool | None:
        """True once the store took the result; None if a reload meanwhile made it refuse it."""
        now = self._wall()
        state = self._store.snapshot.get(CUSTOMERS)
        previous = state.customers if state is not None else None
        rows, systems = counted(settings, devices, wanted, issues, previous, scanned_at)
        errors = dict(previous.scan_errors if previous is not None else CustomerData(()).scan_errors)
        for error in failed.values():
            errors[error.reason] = errors.get(error.reason, 0) + 1
        data = CustomerData(rows, MappingProxyType(errors), systems)

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


def counted(
    settings: CustomerSettings,
    devices: DeviceTally,
    wanted: Sequence[int],
    issues: Mapping[int, set[int]],
    previous: CustomerData | None,
    scanned_at: float,
) -> tuple[tuple[CustomerCount, ...], tuple[OsCount, ...]]:
    """The rows a scan publishes for the `wanted` customers: per device class, and per operating system
    (end-of-life as of the UTC date of `scanned_at`). A customer whose active issues were refused (absent
    from `issues`) keeps its last good patch counts from `previous`, or has none until they were read once."""
    last_good: dict[int, dict[str, int]] = {}
    for row in previous.rows if previous is not None else ():
        if row.patch_issue_devices is not None:
            last_good.setdefault(row.customer_id, {})[row.device_class] = row.patch_issue_devices
    today = dt.datetime.fromtimestamp(scanned_at, dt.UTC).date()
    end_of_life: dict[str, bool] = {}
    rows: list[CustomerCount] = []
    systems: list[OsCount] = []
    for customer_id in wanted:
        problem: dict[str, int] | None = last_good.get(customer_id)
        if customer_id in issues:
            problem = {}
            for device_id in issues[customer_id]:
                device_class = devices.device_class[device_id][1]
                problem[device_class] = problem.get(device_class, 0) + 1
        name = devices.names[customer_id]
        for device_class, (count, stale) in sorted(devices.classes[customer_id].items()):
            rows.append(CustomerCount(
                customer_id, name, device_class, count,
                min(problem.get(device_class, 0), count) if problem is not None else None, stale,
            ))
        for os_name, count in sorted(devices.systems[customer_id].items()):
            if os_name not in end_of_life:
                end_of_life[os_name] = is_end_of_life(settings.end_of_life_os, os_name, today)
            systems.append(OsCount(customer_id, name, os_name, end_of_life[os_name], count))
    return tuple(rows), tuple(systems)


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
    stale = GaugeMetricFamily(
        "ncentral_customer_stale_devices",
        "Devices whose agent last checked in more than customers.stale_after before the scan, or never, per "
        "customer and device class.",
        labels=labels,
    )
    systems = GaugeMetricFamily(
        "ncentral_customer_os_devices",
        "Devices per customer and operating system (supportedOs), and whether that OS was end-of-life at the "
        "scan.",
        labels=["customer_id", "customer", "os", "end_of_life"],
    )
    errors = CounterMetricFamily(
        "ncentral_customer_scan_errors",
        "Customers whose active issues N-central refused during a scan (403, 404), by reason.",
        labels=["reason"],
    )
    for row in state.customers.rows:
        values = [str(row.customer_id), row.customer, row.device_class]
        devices.add_metric(values, row.devices)
        if row.patch_issue_devices is not None:
            issues.add_metric(values, row.patch_issue_devices)
        stale.add_metric(values, row.stale_devices)
    for system in state.customers.systems:
        systems.add_metric(
            [str(system.customer_id), system.customer, system.os, "true" if system.end_of_life else "false"],
            system.devices,
        )
    for reason, count in state.customers.scan_errors.items():
        errors.add_metric([reason], count)
    return [devices, issues, stale, systems, errors]
