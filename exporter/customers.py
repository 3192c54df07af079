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
import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from html import escape
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter import page
from exporter.collection import ResultType
from exporter.config import (
    SENSIBLE_MIN_INTERVAL,
    Config,
    ConfigError,
    Notice,
    count_limit,
    line_of,
    mapping,
    positive_duration,
    regex,
    string,
)
from exporter.devices import Device, optional_text, parse_device
from exporter.errors import (
    Forbidden,
    InvalidResponse,
    NotSupported,
    UpstreamError,
)
from exporter.kind import CustomerColumn, Kind, Memo
from exporter.labels import label_value
from exporter.lifecycle import DEFAULT_END_OF_LIFE_OS, EndOfLife, is_end_of_life
from exporter.report import as_object
from exporter.scan import Calls, Scan, parse_count, parse_int
from exporter.scrub import shown
from exporter.store import CollectionState

log = logging.getLogger(__name__)

# Per-customer failures that do not fail the run: the customer is skipped and keeps its last counts.
CUSTOMER_ERROR_REASONS = (Forbidden.reason, NotSupported.reason)
# Series a scan publishes: per customer and device class (devices, patch issue devices, stale devices),
# and per customer and operating system.
SERIES_PER_CLASS = 3
SERIES_PER_OS = 1

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


class RefusedCustomer(NamedTuple):
    customer_id: int
    customer: str
    reason: str  # one of CUSTOMER_ERROR_REASONS
    status: int | None


@dataclass(frozen=True)
class CustomerData:
    """One scan's published counts, the customers whose active issues that scan was refused, and the
    per-customer errors counted since the exporter started."""

    rows: tuple[CustomerCount, ...]
    scan_errors: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(CUSTOMER_ERROR_REASONS, 0))
    )
    systems: tuple[OsCount, ...] = ()
    refused: tuple[RefusedCustomer, ...] = ()

    def to_json(self) -> dict[str, Any]:
        # The error counts are counters of this process, like the run failures: not persisted.
        return {"rows": [list(row) for row in self.rows], "systems": [list(row) for row in self.systems]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], now: float) -> CustomerData:
        stored = raw.get("customers", raw)  # a version 1 state file kept the counts under "customers"
        return customer_data(stored["rows"], stored["systems"], "state")

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


# --- settings ----------------------------------------------------------------------------------------


# The customer scan's name in the store, the state file and the run metrics' `report` label.
CUSTOMERS = "customers"


@dataclass(frozen=True)
class CustomerSettings:
    """The optional per-customer scan (devices and their active issues)."""

    interval: float = 3600.0
    patch_services: tuple[str, ...] = ("Patch Status v2", "Patch Status")
    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    timeout: float = 600.0  # the scan's deadline: its retries, backoffs and remaining pages stay within it
    # most series a scan may publish: SERIES_PER_CLASS per customer and device class, SERIES_PER_OS per customer and OS
    max_series: int = 20_000
    max_devices: int = 500_000  # most devices one scan may list (each is held while the scan runs)
    stale_after: float = 7 * 86400.0  # an agent silent longer than this is stale
    end_of_life_os: tuple[EndOfLife, ...] = DEFAULT_END_OF_LIFE_OS
    name: str = field(default=CUSTOMERS, init=False)
    kind: ClassVar[str] = "customer_scan"
    result_type: ClassVar[ResultType] = CustomerData

    def wanted(self, customer: str) -> bool:
        """Whether a customer of this name is scanned and published (regexes searched, not anchored)."""
        if self.include is not None and not self.include.search(customer):
            return False
        return self.exclude is None or not self.exclude.search(customer)

    def is_patch_service(self, service_name: str) -> bool:
        return service_name.strip().casefold() in {name.casefold() for name in self.patch_services}

    @property
    def fingerprint(self) -> str:
        """What the scan publishes; a stored result is kept only while this stays the same."""
        spec = [
            sorted(name.casefold() for name in self.patch_services),
            self.include.pattern if self.include is not None else None,
            self.exclude.pattern if self.exclude is not None else None,
            self.stale_after,
            [entry.spec for entry in self.end_of_life_os],
        ]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def _settings(value: object) -> CustomerSettings:
    raw = mapping(value, CUSTOMERS, {
        "interval", "patch_services", "include", "exclude", "timeout", "max_series", "max_devices", "stale_after",
        "end_of_life_os",
    }, optional=True)
    interval = positive_duration(raw.get("interval", "1h"), "customers.interval")
    services_raw = raw.get("patch_services", list(CustomerSettings.patch_services))
    if not isinstance(services_raw, list) or not services_raw:
        raise ConfigError("customers.patch_services: must be a non-empty list of service names")
    services = tuple(dict.fromkeys(string(item, "customers.patch_services[]") for item in services_raw))
    return CustomerSettings(
        interval=interval,
        patch_services=services,
        include=regex(raw.get("include"), "customers.include"),
        exclude=regex(raw.get("exclude"), "customers.exclude"),
        timeout=positive_duration(raw.get("timeout", "10m"), "customers.timeout"),
        max_series=count_limit(raw.get("max_series", CustomerSettings.max_series), "customers.max_series"),
        max_devices=count_limit(raw.get("max_devices", CustomerSettings.max_devices), "customers.max_devices"),
        stale_after=positive_duration(raw.get("stale_after", "7d"), "customers.stale_after"),
        end_of_life_os=(_end_of_life_os(raw["end_of_life_os"], "customers.end_of_life_os")
                        if "end_of_life_os" in raw else DEFAULT_END_OF_LIFE_OS),
    )


def _end_of_life_os(value: object, key: str) -> tuple[EndOfLife, ...]:
    """A user's list of end-of-life rules (it replaces the default list; an empty list means none)."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of {{match, since, except}} entries, got {shown(value)}")
    rules = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        entry = mapping(item, where, {"match", "since", "except"})
        match = regex(entry.get("match"), f"{where}.match", re.IGNORECASE)
        if match is None or entry.get("since") is None:
            raise ConfigError(f"{where}.{'match' if match is None else 'since'}: missing")
        rules.append(EndOfLife(match, _date(entry["since"], f"{where}.since"),
                               regex(entry.get("except"), f"{where}.except", re.IGNORECASE)))
    return tuple(rules)


def _date(value: object, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ConfigError(f"{key}: must be a date (YYYY-MM-DD), got a date and time {value.isoformat()}")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key}: must be a date (YYYY-MM-DD), got {shown(value)}{line_of(value)}") from None


# --- parsing: N-central JSON → typed values (all validation of upstream data is here) ----------------


def customer_data(
    rows: Iterable[Sequence[object]], systems: Iterable[Sequence[object]], where: str
) -> CustomerData:
    """Counts from rows of plain values (the state file keeps them so), as strictly as N-central's answers:
    raises InvalidResponse, ValueError, TypeError or KeyError if they are not that."""
    counts = []
    for customer_id, customer, device_class, devices, issues, stale in rows:
        count = parse_count(devices, where)
        counts.append(CustomerCount(
            parse_int(customer_id, where), label_value(customer, where), label_value(device_class, where), count,
            min(parse_count(issues, where), count) if issues is not None else None,
            min(parse_count(stale, where), count),
        ))
    os_counts = []
    for customer_id, customer, os_name, end_of_life, devices in systems:
        if not isinstance(end_of_life, bool):
            raise InvalidResponse(f"{where}: expected true or false, got {shown(end_of_life)}")
        os_counts.append(OsCount(
            parse_int(customer_id, where), label_value(customer, where), label_value(os_name, where), end_of_life,
            parse_count(devices, where),
        ))
    return CustomerData(rows=tuple(counts), systems=tuple(os_counts))


def patch_issue_device(settings: CustomerSettings, raw: object, where: str) -> int | None:
    """The device id of an active issue on a patch service; None for any other issue."""
    raw = as_object(raw, where)
    service = optional_text(raw.get("serviceName"), f"{where}.serviceName")
    if service is None or not settings.is_patch_service(service):
        return None
    return parse_int(raw.get("deviceId"), f"{where}.deviceId")


# --- the scan ----------------------------------------------------------------------------------------


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


class CustomerScan(Scan[CustomerSettings]):
    """Runs the scan (see `Scan`: shutdown, reloads and the timeout are checked before each call)."""

    title = "customer scan"

    @property
    def name(self) -> str:
        return CUSTOMERS

    def settings(self, config: Config) -> CustomerSettings | None:
        return _configured(config)

    def collect(self, settings: CustomerSettings, calls: Calls, started: float) -> bool | None:
        scanned_at = self._wall()
        devices = self._devices(calls, settings, scanned_at)
        wanted = sorted(cid for cid, name in devices.names.items() if settings.wanted(name))
        issues, failed = self._issues(calls, settings, wanted, devices)
        previous = KIND.result(self._store.snapshot.get(CUSTOMERS), CustomerData)
        rows, systems = counted(settings, devices, wanted, issues, previous, scanned_at)
        errors = dict(previous.scan_errors if previous is not None else CustomerData(()).scan_errors)
        for error in failed.values():
            errors[error.reason] = errors.get(error.reason, 0) + 1
        refused = tuple(
            RefusedCustomer(customer_id, devices.names[customer_id], error.reason, error.status)
            for customer_id, error in failed.items()
        )
        data = CustomerData(rows, MappingProxyType(errors), systems, refused)
        recorded = self.succeeded(settings, calls.client, started, lambda state: replace(state, result=data), {
            "customers": len(wanted), "devices": len(devices.device_class), "customers_refused": len(failed),
        })
        if recorded:
            _log_refusals(previous.refused if previous is not None else (), refused)
        return recorded

    def _devices(self, calls: Calls, settings: CustomerSettings, now: float) -> DeviceTally:
        """The device list counted, refused as `invalid_response` the moment it holds more devices than
        `max_devices` or would publish more series than `max_series` (memory stays bounded)."""
        tally = DeviceTally(now, settings.stale_after)
        skipped = 0
        # Series published as listed so far by the customers whose name (the last one seen, which is the one
        # published) is kept; a renamed customer moves all its series in or out.
        series = 0
        unreadable, example = 0, ""  # check-in times of the customers kept that could not be read
        for device in calls.pages("/api/devices", parse_device):
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
        self, calls: Calls, settings: CustomerSettings, wanted: list[int], devices: DeviceTally
    ) -> tuple[dict[int, set[int]], dict[int, UpstreamError]]:
        """Per customer, its devices with an active issue on a patch service; and the customers whose
        active issues were refused (403/404)."""

        def one(customer_id: int) -> set[int] | UpstreamError:
            path = f"/api/org-units/{customer_id}/active-issues"
            found: set[int] = set()
            try:
                parse = partial(patch_issue_device, settings)
                for device_id in calls.pages(path, parse, parallel=False):
                    # Only the customer's own devices, as listed: an issue may name a device that left.
                    if device_id is not None and devices.device_class.get(device_id, (None,))[0] == customer_id:
                        found.add(device_id)
            except (Forbidden, NotSupported) as exc:
                return exc
            return found

        issues: dict[int, set[int]] = {}
        failed: dict[int, UpstreamError] = {}
        tasks = [partial(one, customer_id) for customer_id in wanted]
        for customer_id, result in zip(wanted, calls.in_order(tasks), strict=True):
            if isinstance(result, UpstreamError):
                failed[customer_id] = result  # logged once the result is recorded, if it is news
            else:
                issues[customer_id] = result
        return issues, failed

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


def _log_refusals(before: Sequence[RefusedCustomer], now: Sequence[RefusedCustomer]) -> None:
    """A warning when a customer's active issues are refused where the last scan read them (or refused them
    for another reason), a line when they are readable again; nothing while a refusal goes on, scan after
    scan (the landing page and `ncentral_customer_scan_errors_total` show it)."""
    known = {(customer.customer_id, customer.reason) for customer in before}
    still = {customer.customer_id for customer in now}
    for customer in now:
        if (customer.customer_id, customer.reason) not in known:
            log.warning(
                "customer's active issues refused; keeping its last counts",
                extra={"report": CUSTOMERS, "customer_id": customer.customer_id, "customer": customer.customer,
                       "reason": customer.reason,
                       "status": customer.status if customer.status is not None else "none"},
            )
    for customer in before:
        if customer.customer_id not in still:
            log.info("customer's active issues readable again",
                     extra={"report": CUSTOMERS, "customer_id": customer.customer_id, "customer": customer.customer})


# --- metrics -----------------------------------------------------------------------------------------


def families(data: CustomerData | None) -> list[Metric]:
    """The customer metrics from the scan's result; none while the scan has none."""
    if data is None:
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
    for row in data.rows:
        values = [str(row.customer_id), row.customer, row.device_class]
        devices.add_metric(values, row.devices)
        if row.patch_issue_devices is not None:
            issues.add_metric(values, row.patch_issue_devices)
        stale.add_metric(values, row.stale_devices)
    for system in data.systems:
        systems.add_metric(
            [str(system.customer_id), system.customer, system.os, "true" if system.end_of_life else "false"],
            system.devices,
        )
    for reason, count in data.scan_errors.items():
        errors.add_metric([reason], count)
    return [devices, issues, stale, systems, errors]


# --- landing page ------------------------------------------------------------------------------------


def customers_section(
    state: CollectionState | None, next_run: dt.datetime | None, now: float, memo: Memo,
    columns: Sequence[CustomerColumn] = (),
) -> str:
    """The customer scan's outcome and the customers with the largest share of devices with a patch problem
    (with `columns`, the other kinds' figures per customer); empty while the scan has neither run nor been
    scheduled."""
    data = KIND.result(state, CustomerData)
    if state is None or (data is None and state.last_run_time is None and next_run is None):
        return ""
    outcome = page.outcome(state, "no scan finished yet")
    parts = [
        f'<section class="customers" id="{CUSTOMERS}"><h2>Customers</h2><table>'
        f"<tr><th>last scan</th><td>{outcome}</td></tr>"
        f"<tr><th>last success</th><td>{page.when(state.last_success_time, now)}</td></tr>"
        f"<tr><th>next scan</th><td>{page.next_run(next_run)}</td></tr></table>"
    ]
    if data is not None:
        parts.append(memo((data, *(column.source for column in columns)), lambda: customers_table(data, columns)))
    parts.append("</section>")
    return "".join(parts)


def customers_table(data: CustomerData, columns: Sequence[CustomerColumn] = (), limit: int = 20) -> str:
    """The `limit` customers with the largest share of devices with a patch problem, as an HTML table, with
    their stale and end-of-life devices, then `columns`. A customer whose active issues were never read comes
    last."""

    def share(part: int | None, whole: int) -> float:
        return part / whole if part is not None and whole else 0.0

    worst = sorted(data.per_customer(), key=lambda row: (
        row.patch_issue_devices is None, -share(row.patch_issue_devices, row.devices), -(row.patch_issue_devices or 0),
        row.customer, row.customer_id,
    ))
    def cells(row: CustomerTotals) -> str:
        issues = row.patch_issue_devices
        patch = ('<td class="n">not read</td><td class="n"></td>' if issues is None else
                 f'<td class="n">{issues}</td><td class="n">{share(issues, row.devices):.1%}</td>')
        return (f'<tr><td>{escape(row.customer)}</td><td class="n">{row.customer_id}</td>'
                f'<td class="n">{row.devices}</td>{patch}<td class="n">{row.stale_devices}</td>'
                f'<td class="n">{row.end_of_life_devices}</td>'
                + "".join(f'<td class="n">{escape(column.cells.get(row.customer_id, ""))}</td>' for column in columns)
                + "</tr>")

    body = "".join(cells(row) for row in worst[:limit])
    return (
        f"<h3>The {min(limit, len(worst))} of {len(worst)} customers with the largest share of devices "
        "with a patch problem</h3><table><tr><th>customer</th><th>id</th><th>devices</th>"
        "<th>with a patch problem</th><th>share</th><th>stale</th><th>end-of-life OS</th>"
        f"{''.join(f'<th>{escape(column.header)}</th>' for column in columns)}</tr>{body}</table>{refused_table(data)}"
    )


# Why N-central refuses a customer's active issues, per reason.
_REFUSALS = {
    "forbidden": "the API user may not read this customer's active issues",
    "not_supported": "N-central does not know this customer (deleted during the scan?)",
}


def refused_table(data: CustomerData) -> str:
    """The customers whose active issues the last scan was refused, with the reason; empty if none."""
    if not data.refused:
        return ""
    read = {row.customer_id for row in data.rows if row.patch_issue_devices is not None}
    body = "".join(
        f'<tr><td>{escape(customer.customer)}</td><td class="n">{customer.customer_id}</td>'
        f'<td><span class="bad">{escape(customer.reason)}</span>'
        f"{f' (HTTP {customer.status})' if customer.status is not None else ''}: "
        f"{escape(_REFUSALS.get(customer.reason, 'refused'))}</td>"
        f"<td>{'its last good counts' if customer.customer_id in read else 'none yet'}</td></tr>"
        for customer in sorted(data.refused, key=lambda customer: (customer.customer, customer.customer_id))
    )
    return (
        f"<h3>{len(data.refused)} customer(s) whose active issues N-central refused in the last scan</h3>"
        "<table><tr><th>customer</th><th>id</th><th>reason</th><th>patch problem counts shown</th></tr>"
        f"{body}</table>"
    )


# --- the kind ----------------------------------------------------------------------------------------


def _configured(config: Config) -> CustomerSettings | None:
    """The scan's settings in `config`; None when the scan is off."""
    settings = config.collection(CUSTOMERS)
    return settings if isinstance(settings, CustomerSettings) else None


class CustomerScanKind(Kind[CustomerSettings]):
    settings_type = CustomerSettings
    run_type = CustomerScan
    section = CUSTOMERS
    title = "customer scan"

    def parse(self, value: object, notices: list[Notice]) -> tuple[CustomerSettings, ...]:
        settings = _settings(value)
        if settings.interval < SENSIBLE_MIN_INTERVAL:
            notices.append(Notice(
                logging.WARNING, "customers.interval is below 15m: every scan makes one call per customer",
                {"interval_seconds": settings.interval},
            ))
        return (settings,)

    def demo(self, interval: float) -> tuple[CustomerSettings, ...]:
        return (CustomerSettings(interval=interval),)

    def summary(self, collections: Sequence[CustomerSettings]) -> str | None:
        return "; ".join(f"customer scan every {settings.interval:g}s, timeout {settings.timeout:g}s"
                         for settings in collections) or None

    def families(self, states: Sequence[tuple[str, CollectionState]]) -> list[Metric]:
        return [family for _, state in states for family in families(self.result(state, CustomerData))]

    def landing(
        self, collections: Sequence[tuple[CustomerSettings, CollectionState | None, dt.datetime | None]],
        now: float, memo: Memo, columns: Sequence[CustomerColumn] = (),
    ) -> str:
        return "".join(customers_section(state, next_run, now, memo, columns) for _, state, next_run in collections)


KIND = CustomerScanKind()
