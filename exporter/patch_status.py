"""The patch status scan: every device's patch service state, counted per customer, device class and state.
A collection kind of its own, off by default: it costs one call per device.

One run: `GET /api/devices` paged (device id, customer, class), then one
`GET /api/devices/{id}/service-monitor-status` per device of a customer the include/exclude regexes keep,
at most two calls in flight (N-central answers 429 beyond its limit per endpoint; the client backs off).
A device that answers 404 (deleted since it was listed), 403 or an unreadable answer is skipped and counted
in `ncentral_patch_status_device_errors_total`; when more than 5 % of the devices are skipped the scan
fails and the last good counts stay served. While it runs the scan holds one small record per device
(its customer and class); each answer is reduced to its counts as it arrives.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from html import escape
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter import page
from exporter.collection import ResultType
from exporter.config import (
    Config,
    ConfigError,
    Notice,
    count_limit,
    mapping,
    positive_duration,
    regex,
    string,
)
from exporter.devices import Device, parse_device
from exporter.errors import Forbidden, InvalidResponse, NotSupported, UpstreamError
from exporter.kind import CustomerColumn, Kind, Memo
from exporter.labels import label_value, snake_case
from exporter.report import as_object
from exporter.scan import Calls, Scan, parse_count, parse_int
from exporter.scrub import shown
from exporter.store import CollectionState
from exporter.timestamps import parse_timestamp

log = logging.getLogger(__name__)

NOT_MONITORED = "not_monitored"  # the state of a device without a patch service
NORMAL = "normal"
MAX_STATE_LENGTH = 40  # a state N-central adds later passes through, cut to this many characters
MAX_FAILED_SHARE = 0.05  # more devices skipped than this share fails the scan
# The reasons a device is skipped, by the failure of its call.
DEVICE_ERROR_REASONS = ("not_found", "forbidden", "invalid_response")
_REASON_OF: tuple[tuple[type[UpstreamError], str], ...] = (
    (NotSupported, "not_found"), (Forbidden, "forbidden"), (InvalidResponse, "invalid_response"),
)


# --- parsing: one device's service-monitor-status answer --------------------------------------------------


class PatchService(NamedTuple):
    """A device's patch service as the scan counts it."""

    state: str  # snake_case stateStatus
    last_scan: float | None  # Unix time; None when missing or unreadable
    transition: float | None  # Unix time the state last changed; None when missing or unreadable
    last_scan_unreadable: bool = False
    transition_unreadable: bool = False


def state_label(value: object, where: str) -> str:
    """`stateStatus` as a label value: snake_case, at most MAX_STATE_LENGTH characters."""
    if value is None or value == "":
        return "unknown"
    text = label_value(value, where)
    return snake_case(text)[:MAX_STATE_LENGTH].rstrip("_") or "unknown"


def patch_service(body: Mapping[str, Any], services: Sequence[str], where: str) -> PatchService | None:
    """The device's patch service: of the services named `services` (compared without regard to case), the
    one named first; None when the device has none. Raises InvalidResponse for an answer of another shape."""
    items = body.get("data")
    if not isinstance(items, list):
        raise InvalidResponse(f"{where}: answer has no data list (got {shown(items)})")
    rank = {name.casefold(): index for index, name in enumerate(services)}
    best: tuple[int, Mapping[str, Any]] | None = None
    for index, item in enumerate(items):
        raw = as_object(item, f"{where} data[{index}]")
        module = raw.get("moduleName")
        if not isinstance(module, str):
            continue  # a service without a name is no patch service
        position = rank.get(module.strip().casefold())
        if position is not None and (best is None or position < best[0]):
            best = (position, raw)
    if best is None:
        return None
    raw = best[1]
    state = state_label(raw.get("stateStatus"), f"{where} stateStatus")
    last_scan_raw, transition_raw = raw.get("lastScanTime"), raw.get("transitionTime")
    last_scan = parse_timestamp(last_scan_raw)
    transition = parse_timestamp(transition_raw)
    # A time without an offset is the server's local time: that of lastScanTime in the same record, if any.
    default_offset = last_scan.offset if last_scan is not None else None
    return PatchService(
        state,
        last_scan.seconds(None) if last_scan is not None else None,
        transition.seconds(default_offset) if transition is not None else None,
        last_scan is None and last_scan_raw not in (None, ""),
        transition is None and transition_raw not in (None, ""),
    )


# --- settings ----------------------------------------------------------------------------------------

# The scan's name in the store, the state file and the run metrics' `report` label.
PATCH_STATUS = "patch_status"


@dataclass(frozen=True)
class PatchStatusSettings:
    """The optional patch status scan: every device's patch service state, one call per device."""

    interval: float = 6 * 3600.0
    timeout: float = 3600.0  # the scan's deadline: its retries, backoffs and remaining calls stay within it
    patch_services: tuple[str, ...] = ("Patch Status v2", "Patch Status")  # the first one a device has wins
    scan_stale_after: float = 7 * 86400.0
    sla: float = 14 * 86400.0
    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    max_devices: int = 50_000  # most devices one scan may ask about (each is one call, and held while it runs)
    name: str = field(default=PATCH_STATUS, init=False)
    kind: ClassVar[str] = PATCH_STATUS
    result_type: ClassVar[ResultType]  # PatchStatusData, set below

    def wanted(self, customer: str) -> bool:
        """Whether a customer of this name is scanned and published (regexes searched, not anchored)."""
        if self.include is not None and not self.include.search(customer):
            return False
        return self.exclude is None or not self.exclude.search(customer)

    @property
    def fingerprint(self) -> str:
        """What the scan publishes: the stored counts are kept only while this stays the same."""
        spec = [
            [name.casefold() for name in self.patch_services], self.scan_stale_after, self.sla,
            self.include.pattern if self.include is not None else None,
            self.exclude.pattern if self.exclude is not None else None,
        ]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def parse_settings(value: object, notices: list[Notice]) -> PatchStatusSettings:
    """The `patch_status` section (an empty one: the defaults); ConfigError naming the key."""
    key = PATCH_STATUS
    raw = mapping(value, key, {
        "interval", "timeout", "patch_services", "scan_stale_after", "sla", "include", "exclude", "max_devices",
    }, optional=True)
    services_raw = raw.get("patch_services", list(PatchStatusSettings.patch_services))
    if not isinstance(services_raw, list) or not services_raw:
        raise ConfigError(f"{key}.patch_services: must be a non-empty list of service names")
    services: dict[str, str] = {}  # each name once, compared without regard to case, in order
    for item in services_raw:
        name = string(item, f"{key}.patch_services[]")
        services.setdefault(name.casefold(), name)
    settings = PatchStatusSettings(
        interval=positive_duration(raw.get("interval", "6h"), f"{key}.interval"),
        timeout=positive_duration(raw.get("timeout", "1h"), f"{key}.timeout"),
        patch_services=tuple(services.values()),
        scan_stale_after=positive_duration(raw.get("scan_stale_after", "7d"), f"{key}.scan_stale_after"),
        sla=positive_duration(raw.get("sla", "14d"), f"{key}.sla"),
        include=regex(raw.get("include"), f"{key}.include"),
        exclude=regex(raw.get("exclude"), f"{key}.exclude"),
        max_devices=count_limit(raw.get("max_devices", PatchStatusSettings.max_devices), f"{key}.max_devices"),
    )
    if settings.interval < 3600.0:
        notices.append(Notice(
            logging.WARNING, "patch_status.interval is below 1h: every scan makes one call per device",
            {"interval_seconds": settings.interval},
        ))
    return settings


# --- the result ----------------------------------------------------------------------------------------


class PatchCount(NamedTuple):
    customer_id: int
    customer: str
    device_class: str
    state: str
    devices: int
    scan_stale: int  # of `devices`, those whose patch scan is older than scan_stale_after (or unknown)
    sla_breached: int  # of `devices`, those not normal for longer than the SLA


@dataclass(frozen=True)
class PatchStatusData:
    """One scan's published counts, and the devices skipped since the exporter started, by reason."""

    rows: tuple[PatchCount, ...]
    device_errors: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(DEVICE_ERROR_REASONS, 0))
    )

    def to_json(self) -> dict[str, Any]:
        # The skipped devices are counters of this process, like the run failures: not persisted.
        return {"rows": [list(row) for row in self.rows]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], now: float) -> PatchStatusData:
        """The counts as `to_json` wrote them, checked as strictly as N-central's answers: raises
        InvalidResponse, ValueError, TypeError or KeyError if they are not that."""
        where = "state"
        rows = []
        for customer_id, customer, device_class, state, devices, stale, breached in raw["rows"]:
            count = parse_count(devices, where)
            rows.append(PatchCount(
                parse_int(customer_id, where), label_value(customer, where), label_value(device_class, where),
                state_label(state, where), count, min(parse_count(stale, where), count),
                min(parse_count(breached, where), count),
            ))
        return cls(tuple(rows))

    @functools.cached_property
    def per_customer(self) -> Mapping[int, tuple[int, int]]:
        """Per customer id: (normal devices, devices with a patch service), the parts of its compliance;
        computed once per result."""
        totals: dict[int, list[int]] = {}
        for row in self.rows:
            entry = totals.setdefault(row.customer_id, [0, 0])
            if row.state == NORMAL:
                entry[0] += row.devices
            if row.state != NOT_MONITORED:
                entry[1] += row.devices
        return MappingProxyType({customer_id: (normal, monitored) for customer_id, (normal, monitored)
                                 in totals.items()})


class _Tally:
    """The counts a scan builds as answers arrive, and what it skipped or could not read."""

    def __init__(self, now: float, settings: PatchStatusSettings) -> None:
        self._now = now
        self._settings = settings
        self.counts: dict[tuple[int, str, str], list[int]] = {}  # (customer, class, state) → devices, stale, breached
        self.skipped: dict[str, int] = dict.fromkeys(DEVICE_ERROR_REASONS, 0)
        self.unreadable_scan_times = 0
        self.unreadable_transition_times = 0

    def add(self, device: Device, service: PatchService | None) -> None:
        state = service.state if service is not None else NOT_MONITORED
        entry = self.counts.setdefault((device.customer_id, device.device_class, state), [0, 0, 0])
        entry[0] += 1
        if service is None:
            return
        if service.last_scan is None or self._now - service.last_scan > self._settings.scan_stale_after:
            entry[1] += 1
        if state != NORMAL and service.transition is not None and self._now - service.transition > self._settings.sla:
            entry[2] += 1
        self.unreadable_scan_times += service.last_scan_unreadable
        self.unreadable_transition_times += service.transition_unreadable

    def rows(self, names: Mapping[int, str]) -> tuple[PatchCount, ...]:
        return tuple(
            PatchCount(customer_id, names[customer_id], device_class, state, devices, stale, breached)
            for (customer_id, device_class, state), (devices, stale, breached) in sorted(self.counts.items())
        )


# --- the scan ----------------------------------------------------------------------------------------


class PatchStatusScan(Scan[PatchStatusSettings]):
    title = "patch status scan"
    name = PATCH_STATUS

    def settings(self, config: Config) -> PatchStatusSettings | None:
        settings = config.collection(PATCH_STATUS)
        return settings if isinstance(settings, PatchStatusSettings) else None

    def collect(self, settings: PatchStatusSettings, calls: Calls, started: float) -> bool | None:
        tally = _Tally(self._wall(), settings)
        devices, names = self._devices(calls, settings)
        allowed = int(len(devices) * MAX_FAILED_SHARE)
        asks = (partial(_ask, calls, settings, device.device_id) for device in devices)
        for device, outcome in zip(devices, calls.in_order(asks), strict=True):
            if isinstance(outcome, UpstreamError):
                reason = next(reason for kind, reason in _REASON_OF if isinstance(outcome, kind))
                tally.skipped[reason] += 1
                log.debug("device skipped", extra={"report": PATCH_STATUS, "device_id": device.device_id,
                                                   "reason": reason, "error": outcome.message})
                skipped = sum(tally.skipped.values())
                if skipped > allowed:
                    raise type(outcome)(
                        f"{skipped} of {len(devices)} devices' service-monitor-status failed, more than "
                        f"{MAX_FAILED_SHARE:.0%} (the last: {outcome.message})", status=outcome.status,
                    )
            else:
                tally.add(device, outcome)
        if tally.unreadable_scan_times or tally.unreadable_transition_times:
            log.warning("patch service times N-central sent that the exporter cannot read: an unreadable "
                        "lastScanTime counts as stale, an unreadable transitionTime as no SLA breach",
                        extra={"report": PATCH_STATUS, "lastScanTime": tally.unreadable_scan_times,
                               "transitionTime": tally.unreadable_transition_times})
        return self._record_success(settings, calls, tally, names, len(devices), started)

    def _devices(self, calls: Calls, settings: PatchStatusSettings) -> tuple[list[Device], dict[int, str]]:
        """The devices of the customers kept, each once, refused as `invalid_response` beyond `max_devices`."""
        names: dict[int, str] = {}
        kept: dict[int, Device] = {}
        for device in calls.pages("/api/devices", parse_device):
            if device is None or device.device_id in kept or not settings.wanted(device.customer):
                continue  # no customer (the SO's own), listed twice as the list moved, or left out
            # One copy of each name and class for all their devices; a customer renamed while the list was
            # paged is published under the name seen last.
            names[device.customer_id] = device.customer
            kept[device.device_id] = device._replace(customer="", device_class=sys.intern(device.device_class))
            if len(kept) > settings.max_devices:
                raise InvalidResponse(f"GET /api/devices: more than {PATCH_STATUS}.max_devices="
                                      f"{settings.max_devices} devices to ask about; raise it or narrow "
                                      f"{PATCH_STATUS}.include/exclude")
        return list(kept.values()), names

    def _record_success(
        self, settings: PatchStatusSettings, calls: Calls, tally: _Tally, names: Mapping[int, str], devices: int,
        started: float,
    ) -> bool | None:
        previous = KIND.result(self._store.snapshot.get(PATCH_STATUS), PatchStatusData)
        errors = dict(previous.device_errors if previous is not None else PatchStatusData(()).device_errors)
        for reason, count in tally.skipped.items():
            errors[reason] = errors.get(reason, 0) + count
        data = PatchStatusData(tally.rows(names), MappingProxyType(errors))
        return self.succeeded(
            settings, calls.client, started, lambda state: replace(state, result=data),
            {"devices": devices, "customers": len(names), "devices_skipped": sum(tally.skipped.values())},
        )


def _ask(calls: Calls, settings: PatchStatusSettings, device_id: int) -> PatchService | UpstreamError | None:
    """One device's patch service; the failure that skips it (404, 403, an unreadable answer)."""
    path = f"/api/devices/{device_id}/service-monitor-status"
    try:
        return patch_service(calls.get(path), settings.patch_services, f"GET {path}")
    except (NotSupported, Forbidden, InvalidResponse) as exc:
        return exc


# --- metrics -----------------------------------------------------------------------------------------


def families(data: PatchStatusData | None) -> list[Metric]:
    """The patch status metrics from the scan's result; none while the scan has none."""
    if data is None:
        return []
    labels = ["customer_id", "customer", "device_class"]
    devices = GaugeMetricFamily(
        "ncentral_customer_patch_status_devices",
        "Devices per customer, device class and state of their patch service (not_monitored: none), as of the "
        "last successful patch status scan; every device counted once.",
        labels=[*labels, "state"],
    )
    stale = GaugeMetricFamily(
        "ncentral_customer_patch_scan_stale_devices",
        "Devices whose patch service last scanned longer ago than patch_status.scan_stale_after (or never).",
        labels=labels,
    )
    breached = GaugeMetricFamily(
        "ncentral_customer_patch_sla_breached_devices",
        "Devices whose patch service has been in a state other than normal for longer than patch_status.sla.",
        labels=labels,
    )
    errors = CounterMetricFamily(
        "ncentral_patch_status_device_errors",
        "Devices the patch status scans skipped (404, 403, an unreadable answer), by reason.",
        labels=["reason"],
    )
    per_class: dict[tuple[str, str, str], list[int]] = {}
    for row in data.rows:
        group = (str(row.customer_id), row.customer, row.device_class)
        devices.add_metric([*group, row.state], row.devices)
        entry = per_class.setdefault(group, [0, 0])
        entry[0] += row.scan_stale
        entry[1] += row.sla_breached
    for group, (stale_count, breached_count) in per_class.items():
        stale.add_metric(list(group), stale_count)
        breached.add_metric(list(group), breached_count)
    for reason, count in data.device_errors.items():
        errors.add_metric([reason], count)
    return [devices, stale, breached, errors]


# --- landing page and the kind ----------------------------------------------------------------------


def compliance_table(data: PatchStatusData, names: Mapping[int, str], limit: int = 20) -> str:
    """The estate's compliance, then the `limit` customers with the lowest: normal devices over those with a
    patch service."""
    totals = data.per_customer
    normal = sum(part for part, _ in totals.values())
    monitored = sum(whole for _, whole in totals.values())
    worst = sorted(((part / whole, part, whole, cid) for cid, (part, whole) in totals.items() if whole),
                   key=lambda row: (row[0], names[row[3]], row[3]))
    rows = "".join(
        f'<tr><td>{escape(names[cid])}</td><td class="n">{cid}</td><td class="n">{part}</td>'
        f'<td class="n">{whole}</td><td class="n">{share:.1%}</td></tr>'
        for share, part, whole, cid in worst[:limit]
    )
    estate = (f"<p>Patch compliance of the estate: {normal / monitored:.1%} ({normal} of {monitored} devices with "
              "a patch service are normal)</p>" if monitored else "")
    return (
        f"{estate}<h3>The {min(limit, len(worst))} of {len(worst)} customers with the lowest patch compliance"
        "</h3><table><tr><th>customer</th><th>id</th><th>normal</th><th>with a patch service</th>"
        f"<th>patch compliance</th></tr>{rows}</table>"
    )


def patch_status_section(state: CollectionState | None, next_run: dt.datetime | None, now: float, memo: Memo) -> str:
    """The scan's outcome and the customers with the lowest compliance; empty while it has neither run nor
    been scheduled."""
    data = KIND.result(state, PatchStatusData)
    if state is None or (data is None and state.last_run_time is None and next_run is None):
        return ""
    parts = [
        f'<section class="{PATCH_STATUS}" id="{PATCH_STATUS}"><h2>Patch status</h2><table>'
        f"<tr><th>last scan</th><td>{page.outcome(state, 'no scan finished yet')}</td></tr>"
        f"<tr><th>last success</th><td>{page.when(state.last_success_time, now)}</td></tr>"
        f"<tr><th>next scan</th><td>{page.next_run(next_run)}</td></tr></table>"
    ]
    if data is not None:
        names = {row.customer_id: row.customer for row in data.rows}
        parts.append(memo(data, lambda: compliance_table(data, names)))
    parts.append("</section>")
    return "".join(parts)


class PatchStatusKind(Kind[PatchStatusSettings]):
    settings_type = PatchStatusSettings
    run_type = PatchStatusScan
    section = PATCH_STATUS
    title = "patch status scan"

    def parse(self, value: object, notices: list[Notice]) -> tuple[PatchStatusSettings, ...]:
        return (parse_settings(value, notices),)

    def demo(self, interval: float) -> tuple[PatchStatusSettings, ...]:
        # The named demo customers (about 400 devices, one call each), once per demo's ten minutes.
        return (PatchStatusSettings(interval=10 * interval, exclude=re.compile("^Customer ")),)

    def summary(self, collections: Sequence[PatchStatusSettings]) -> str | None:
        return "; ".join(f"patch status scan every {settings.interval:g}s, timeout {settings.timeout:g}s"
                         for settings in collections) or None

    def families(self, states: Sequence[tuple[str, CollectionState]]) -> list[Metric]:
        return [family for _, state in states for family in families(self.result(state, PatchStatusData))]

    def customer_column(
        self, states: Sequence[tuple[PatchStatusSettings, CollectionState | None]]
    ) -> CustomerColumn | None:
        """Each scanned customer's patch compliance; "no patch service" for one without a device that has it."""
        data = next((result for _, state in states if (result := self.result(state, PatchStatusData))), None)
        if data is None:
            return None
        cells = {cid: f"{part / whole:.1%}" if whole else "no patch service"
                 for cid, (part, whole) in data.per_customer.items()}
        return CustomerColumn("patch compliance", cells, data)

    def landing(
        self, collections: Sequence[tuple[PatchStatusSettings, CollectionState | None, dt.datetime | None]],
        now: float, memo: Memo, columns: Sequence[CustomerColumn] = (),
    ) -> str:
        return "".join(patch_status_section(state, next_run, now, memo) for _, state, next_run in collections)


PatchStatusSettings.result_type = PatchStatusData
KIND = PatchStatusKind()
