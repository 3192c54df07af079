"""The customer estate the simulated N-central holds: customers, their devices, their active issues and
their monitoring services.

The demo estate has names that need escaping, non-ASCII ones, two customers sharing a name and one whose
active issues answer 403; devices spread unevenly, with a realistic mix of operating systems (some
end-of-life, one LTSC edition) and agents' last check-ins (some weeks old, some never, one a minute ahead);
active issues on patch services and on others.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from dataclasses import dataclass
from typing import Any

from exporter.simulator.services import DeviceServices, demo_services, other_services, service_json

# N-central serves fewer items per page than the 1000 the exporter asks for, and answers 429 to calls
# beyond its concurrency limit per endpoint.
DEFAULT_PAGE_CAP = 500
DEFAULT_CONCURRENCY_LIMIT = 2
ENDPOINT_CONCURRENCY_LIMITS = {"service_monitor_status": 3}

PATCH_SERVICE = "Patch Status v2"
LEGACY_PATCH_SERVICE = "Patch Status"
OTHER_SERVICES = ("Windows UAC Status", "Disk Space", "Agent Status", "CPU", "Windows Service")
DEVICE_CLASSES = ("Workstations - Windows", "Laptops - Windows", "Servers - Windows", "Workstations - macOS",
                  "Servers - Linux")
DEFAULT_OS = "Microsoft Windows 11 Enterprise"
# supportedOs per device class, with weights: Windows 10 past its end of support beside Windows 11, one LTSC
# edition, servers from 2012 R2 (end-of-life) to 2022.
OPERATING_SYSTEMS: dict[str, tuple[tuple[str, int], ...]] = {
    "Workstations - Windows": (
        ("Microsoft Windows 11 Pro", 35), ("Microsoft Windows 11 Enterprise", 25), ("Microsoft Windows 10 Pro", 22),
        ("Microsoft Windows 10 Enterprise", 12), ("Microsoft Windows 10 Enterprise LTSC 2019", 3),
        ("Microsoft Windows 7 Professional", 1),
    ),
    "Laptops - Windows": (
        ("Microsoft Windows 11 Pro", 50), ("Microsoft Windows 11 Home", 10), ("Microsoft Windows 10 Pro", 30),
        ("Microsoft Windows 10 Home", 5),
    ),
    "Servers - Windows": (
        ("Microsoft Windows Server 2022 Standard", 30), ("Microsoft Windows Server 2019 Standard", 30),
        ("Microsoft Windows Server 2016 Standard", 20), ("Microsoft Windows Server 2012 R2 Standard", 12),
        ("Microsoft Windows Server 2022 Datacenter", 8),
    ),
    "Workstations - macOS": (("macOS 15 Sequoia", 60), ("macOS 14 Sonoma", 40)),
    "Servers - Linux": (("Ubuntu 22.04 LTS", 50), ("Ubuntu 24.04 LTS", 30), ("Red Hat Enterprise Linux 9", 20)),
}
SO_NAME = "Demo Service Organization"
# Names a label value, an HTML page and a Grafana regex must carry unchanged.
DEMO_CUSTOMER_NAMES = (
    "Acme Corp", "Acme Corp", "Müller & Söhne GmbH", "Café Zürich AG", "東京テクノロジー株式会社",
    'Smith "Quotes" & <Sons>', "O'Brien\\Backslash IT", "<script>alert(1)</script> Ltd", "Ελληνική Εταιρεία",
    "Żółw Sp. z o.o.", "Regex (Round) [Square] {Curly}|Pipe*+?.^", "Test Lab",
)
FORBIDDEN_CUSTOMER = "Restricted Holdings"


@dataclass(frozen=True)
class EstateCustomer:
    customer_id: int
    name: str
    refused: int | None = None  # its active issues answer this status (403 or 404) instead


@dataclass(frozen=True)
class EstateDevice:
    device_id: int
    customer_id: int
    device_class: str
    os: str | None = DEFAULT_OS  # supportedOs; None: null
    # lastApplianceCheckinTime: a number is the agent's silence in seconds before the answer is served (less
    # than 0: ahead of the server's clock); text is served as it is; None: null (never checked in).
    checkin: float | str | None = 600.0
    customer_name: str | None = None  # the name its record carries, if not its customer's (a rename mid-list)


@dataclass(frozen=True)
class EstateIssue:
    device_id: int
    service_name: str
    notification_state: int = 5


@dataclass(frozen=True)
class Estate:
    customers: tuple[EstateCustomer, ...]
    devices: tuple[EstateDevice, ...]
    issues: tuple[EstateIssue, ...] = ()
    services: tuple[DeviceServices, ...] = ()  # a device left out has a few services, none a patch service

    def customer(self, org_unit: str) -> EstateCustomer | None:
        return next((c for c in self.customers if str(c.customer_id) == org_unit), None)

    def device_json(self, first: int, end: int, now: float) -> list[dict[str, Any]]:
        """The devices from index `first` to `end` as N-central lists them, their check-ins as of `now`."""
        return [
            {**item, "lastApplianceCheckinTime": checkin_text(device, now)}
            for item, device in zip(self._device_json[first:end], self.devices[first:end], strict=True)
        ]

    @functools.cached_property
    def _device_json(self) -> list[dict[str, Any]]:
        names = {customer.customer_id: customer.name for customer in self.customers}
        return [
            {
                "deviceId": device.device_id, "longName": f"DEV-{device.device_id:06d}",
                "deviceClass": device.device_class, "deviceClassLabel": device.device_class, "isProbe": False,
                "orgUnitId": device.customer_id + 100_000, "soId": 50, "soName": SO_NAME,
                "customerId": device.customer_id,
                "customerName": device.customer_name or names[device.customer_id],
                "siteId": device.customer_id + 100_000, "siteName": "Main site",
                "supportedOs": device.os, "deviceStatus": {"state": 1, "status": 1},
            }
            for device in self.devices
        ]

    def service_answer(self, device_id: int, now: float) -> tuple[int, list[dict[str, Any]]]:
        """What the device's service-monitor-status answers at Unix time `now`: 200 and its services, or the
        status it is refused with (404 for a device not in the estate)."""
        if device_id not in self._device_ids:
            return 404, []
        entry = self._services.get(device_id)
        if entry is None:
            entry = DeviceServices(device_id, other_services(random.Random(device_id), OTHER_SERVICES, 2))
        if entry.refused is not None:
            return entry.refused, []
        return 200, [service_json(service, index, device_id, now) for index, service in enumerate(entry.services)]

    @functools.cached_property
    def _device_ids(self) -> frozenset[int]:
        return frozenset(device.device_id for device in self.devices)

    @functools.cached_property
    def _services(self) -> dict[int, DeviceServices]:
        return {entry.device_id: entry for entry in self.services}

    def issue_json(self, customer_id: int) -> list[dict[str, Any]]:
        return self._issue_json.get(customer_id, [])

    @functools.cached_property
    def _issue_json(self) -> dict[int, list[dict[str, Any]]]:
        owner = {device.device_id: device.customer_id for device in self.devices}
        by_customer: dict[int, list[EstateIssue]] = {}
        for issue in self.issues:
            if issue.device_id in owner:
                by_customer.setdefault(owner[issue.device_id], []).append(issue)
        return {customer.customer_id: self._issues_of(customer, by_customer.get(customer.customer_id, []))
                for customer in self.customers}

    @staticmethod
    def _issues_of(customer: EstateCustomer, issues: list[EstateIssue]) -> list[dict[str, Any]]:
        customer_id, name = customer.customer_id, customer.name
        return [
            {
                "orgUnitId": customer_id + 100_000, "deviceId": issue.device_id,
                "notificationState": issue.notification_state, "serviceId": 7000 + index % 50,
                "serviceName": issue.service_name, "serviceType": "AMP", "taskId": 900_000 + index,
                "serviceItemId": 0,
                "_extra": {"deviceName": f"DEV-{issue.device_id:06d}", "customerTree": ["System", SO_NAME, name],
                           "patchManagementEnabled": True, "transitionTime": "2026-02-25T08:00:00Z"},
            }
            for index, issue in enumerate(issues)
        ]


_OFFSET = dt.timezone(dt.timedelta(hours=1))


def checkin_text(device: EstateDevice, now: float) -> str | None:
    """A device's lastApplianceCheckinTime as served at `now`: RFC 3339 in the forms N-central's servers
    write (UTC with Z, a +01:00 offset, milliseconds), picked by device id."""
    if device.checkin is None or isinstance(device.checkin, str):
        return device.checkin
    moment = dt.datetime.fromtimestamp(now - device.checkin, dt.UTC)
    match device.device_id % 3:
        case 0:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        case 1:
            return moment.astimezone(_OFFSET).isoformat(timespec="seconds")
        case _:
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _silence(rng: random.Random, stale_rate: float) -> float | None:
    """An agent's silence in seconds: mostly within the last two days, a customer's share weeks old, a
    few never checked in."""
    draw = rng.random()
    if draw < stale_rate * 0.15:
        return None
    if draw < stale_rate:
        return rng.uniform(8, 120) * 86400
    return rng.uniform(60, 5 * 86400)


@functools.cache
def demo_estate(customers: int = 40, devices: int = 1200, seed: int = 12) -> Estate:
    """A deterministic estate, built once per process for each set of arguments (it is immutable, and every
    simulator starts with the default one): the demo names first (one customer refusing its active issues), devices
    spread unevenly, each customer with its own share of devices with patch issues (some with two patch
    services failing), and issues on other services too; each customer with its own share of agents silent
    for over a week, some never checked in, and the second device one minute ahead of the clock; every
    device's services (see `demo_services`)."""
    rng = random.Random(seed)
    lives = random.Random(seed + 1)  # operating systems and check-ins: drawn apart, so `rng`'s draws stay as they are
    names = [*DEMO_CUSTOMER_NAMES, FORBIDDEN_CUSTOMER]
    names += [f"Customer {index:03d}" for index in range(len(names), customers)]
    members = tuple(
        EstateCustomer(1000 + index, name, refused=403 if name == FORBIDDEN_CUSTOMER else None)
        for index, name in enumerate(names[:customers])
    )
    weights = [rng.uniform(0.2, 3.0) for _ in members]
    problem_rate = {customer.customer_id: rng.choice((0.0, 0.03, 0.1, 0.25, 0.45)) for customer in members}
    stale_rate = {customer.customer_id: lives.choice((0.0, 0.02, 0.05, 0.15, 0.3)) for customer in members}
    estate_devices: list[EstateDevice] = []
    issues: list[EstateIssue] = []
    for number in range(devices):
        customer = members[number] if number < len(members) else rng.choices(members, weights)[0]
        device_class = rng.choices(DEVICE_CLASSES, (50, 30, 15, 4, 1))[0]
        systems = OPERATING_SYSTEMS[device_class]
        os_name = lives.choices([name for name, _ in systems], [weight for _, weight in systems])[0]
        silence = -60.0 if number == 1 else _silence(lives, stale_rate[customer.customer_id])
        device = EstateDevice(2_000_000 + number, customer.customer_id, device_class, os_name, silence)
        estate_devices.append(device)
        if rng.random() < problem_rate[customer.customer_id]:
            issues.append(EstateIssue(device.device_id, PATCH_SERVICE, rng.choice((1, 5))))
            if rng.random() < 0.2:
                issues.append(EstateIssue(device.device_id, LEGACY_PATCH_SERVICE))
        if rng.random() < 0.15:
            issues.append(EstateIssue(device.device_id, rng.choice(OTHER_SERVICES)))
    services = demo_services([device.device_id for device in estate_devices], PATCH_SERVICE, LEGACY_PATCH_SERVICE,
                             OTHER_SERVICES, seed + 1)
    return Estate(members, tuple(estate_devices), tuple(issues), services)
