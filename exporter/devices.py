"""N-central's device list (`GET /api/devices`) as the scans read it: one typed `Device` per entry, every
value checked. Both scan kinds (customers, patch status) page through it; neither owns it."""

from __future__ import annotations

from typing import NamedTuple

from exporter.labels import label_value
from exporter.report import as_object
from exporter.scan import parse_int
from exporter.scrub import shown
from exporter.timestamps import parse_timestamp

UNKNOWN_CLASS = "Unknown"
UNKNOWN_OS = "unknown"


class Device(NamedTuple):
    """One device of a customer, as `/api/devices` lists it."""

    device_id: int
    customer_id: int
    customer: str
    device_class: str
    os: str
    last_checkin: float | None  # seconds since the epoch; None: never checked in, or not readable
    unreadable_checkin: str | None = None  # the value as shown in a log, when it could not be read


def optional_text(value: object, where: str) -> str | None:
    """A text field that N-central may leave null or empty (None then), else a valid label value."""
    if value is None or value == "":
        return None
    return label_value(value, where)


def checkin_time(value: object) -> float | None:
    """`lastApplianceCheckinTime` as seconds since the epoch (UTC when it has no offset); None when null or
    absent (never checked in). Raises ValueError for a value that is not an RFC 3339 date-time."""
    if value is None:
        return None
    stamp = parse_timestamp(value, strict=True)
    if stamp is None:
        raise ValueError("not an RFC 3339 date-time")
    return stamp.seconds()


def parse_device(raw: object, where: str) -> Device | None:
    """A device, or None for one that belongs to no customer (e.g. the service organisation's own). A
    check-in time that cannot be read is kept as `unreadable_checkin` (the device counts as stale): the
    rest of the device is still good."""
    raw = as_object(raw, where)
    device_id = parse_int(raw.get("deviceId"), f"{where}.deviceId")
    if raw.get("customerId") is None:
        return None
    customer_id = parse_int(raw.get("customerId"), f"{where}.customerId")
    customer = optional_text(raw.get("customerName"), f"{where}.customerName") or f"customer {customer_id}"
    device_class = optional_text(raw.get("deviceClass"), f"{where}.deviceClass") or UNKNOWN_CLASS
    os_name = optional_text(raw.get("supportedOs"), f"{where}.supportedOs") or UNKNOWN_OS
    checkin = raw.get("lastApplianceCheckinTime")
    try:
        return Device(device_id, customer_id, customer, device_class, os_name, checkin_time(checkin))
    except ValueError:
        return Device(device_id, customer_id, customer, device_class, os_name, None, shown(checkin))
