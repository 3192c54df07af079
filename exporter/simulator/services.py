"""The monitoring services of each device in the simulated estate, as
`GET /api/devices/{id}/service-monitor-status` answers them.

Times are kept as ages (seconds before the answer) and written at answer time in N-central's forms: N-able's
own example writes `lastScanTime` as `2024-02-28 15:25:05.939 -0500` and `transitionTime` in the server's
local time without an offset (`2024-02-28 15:40:42.407`); RFC 3339 with an offset or `Z` is served too.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PATCH_STATES = ("Normal", "Warning", "Failed", "Misconfigured", "No Data", "Stale", "Disconnected")
NEW_STATE = "Reboot Pending"  # a state this simulator's N-central has and the exporter was not told of
SERVER_UTC_OFFSET = -5 * 3600  # the simulated server's local time, as in N-able's example (-0500)
# How a service's times are written.
FORMS = (
    "nable",  # lastScanTime with its offset (-0500), transitionTime local without one
    "rfc3339",  # both RFC 3339 with the offset, no fractions
    "utc",  # both RFC 3339 in UTC (Z), with milliseconds
    "no_offset",  # both local without an offset: with no offset anywhere in the record, read as UTC
    "garbled",  # neither readable
)
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class EstateService:
    module_name: str
    state_status: str | None
    scan_age: float | None  # seconds before the answer; None: lastScanTime is null
    transition_age: float | None  # seconds before the answer; None: transitionTime is null
    form: str = "nable"
    utc_offset: int = SERVER_UTC_OFFSET  # seconds east of UTC of the server's local time


@dataclass(frozen=True)
class DeviceServices:
    device_id: int
    services: tuple[EstateService, ...] = ()
    refused: int | None = None  # the device answers this status (404: deleted since listed; 403) instead


def _written(age: float | None, now: float, form: str, offset: int, *, with_offset: bool) -> str | None:
    if age is None:
        return None
    if form == "garbled":
        return "yesterday, around noon"
    moment = dt.datetime.fromtimestamp(now - age, dt.UTC)
    if form == "utc":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    zone = dt.timezone(dt.timedelta(seconds=offset if form != "no_offset" else 0))
    local = moment.astimezone(zone)
    if form == "rfc3339":
        return local.replace(microsecond=0).isoformat()
    text = local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    if form == "nable" and with_offset:
        text += local.strftime(" %z")
    return text


def service_json(service: EstateService, index: int, device_id: int, now: float) -> dict[str, Any]:
    """One `DeviceServiceMonitoringStatus` as N-central writes it at Unix time `now`."""
    return {
        "moduleName": service.module_name,
        "stateStatus": service.state_status,
        "taskId": device_id * 10 + index,
        "serviceId": 7000 + index,
        "lastScanTime": _written(service.scan_age, now, service.form, service.utc_offset, with_offset=True),
        "transitionTime": _written(service.transition_age, now, service.form, service.utc_offset,
                                   with_offset=False),
        "timeToStale": "00:30:00",
        "isManagedTask": True,
        "taskNote": None,
    }


def other_services(rng: random.Random, names: Sequence[str], count: int) -> tuple[EstateService, ...]:
    """A few services that are not patch services, all normal."""
    return tuple(
        EstateService(name, "Normal", rng.uniform(60, 4 * HOUR), rng.uniform(DAY, 60 * DAY))
        for name in rng.sample(list(names), count)
    )


def demo_services(device_ids: Sequence[int], patch_service: str, legacy_service: str, others: Sequence[str],
                  seed: int) -> tuple[DeviceServices, ...]:
    """Every device's services: the patch service in every state (and one the exporter does not know), some
    devices without it, some with both services, a few deleted since listed (404); scans mostly recent,
    some stale, some never; transition times on both sides of a 14-day SLA, some a few hours from it;
    N-central's time forms, now and then unreadable."""
    rng = random.Random(seed)
    result = []
    for device_id in device_ids:
        if rng.random() < 0.01:
            result.append(DeviceServices(device_id, refused=404))
            continue
        services = list(other_services(rng, others, rng.randint(1, 3)))
        roll = rng.random()
        if roll >= 0.08:  # the rest have no patch service: patch management never enabled
            names = [patch_service] if roll >= 0.13 else [legacy_service]
            if rng.random() < 0.1:
                names.append(legacy_service if names[0] == patch_service else patch_service)
            for name in names:
                state = rng.choices((*PATCH_STATES, NEW_STATE), (60, 10, 10, 3, 4, 5, 4, 2))[0]
                scan_age = rng.choice((
                    rng.uniform(0.5 * HOUR, 3 * DAY), rng.uniform(0.5 * HOUR, 3 * DAY), rng.uniform(8 * DAY, 30 * DAY),
                ))
                transition_age = rng.choice((
                    rng.uniform(HOUR, 13 * DAY), rng.uniform(15 * DAY, 40 * DAY), 14 * DAY + rng.uniform(-3, 3) * HOUR,
                ))
                form = rng.choices(FORMS, (75, 10, 10, 4, 1))[0]
                services.insert(rng.randint(0, len(services)), EstateService(
                    name, state, scan_age if rng.random() > 0.02 else None, transition_age, form,
                ))
        result.append(DeviceServices(device_id, tuple(services)))
    return tuple(result)
