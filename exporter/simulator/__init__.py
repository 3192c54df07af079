"""An N-central stand-in over real HTTP on loopback: the `--demo` backend and the tests' only fake.

It implements authenticate, refresh, validate, health, server-info, submit and poll as N-central's
OpenAPI description documents them (`ErrorResponse` bodies, `errors[]` on validation failures, a
configurable release in `server-info/extra`, tokens that expire, reports IN_PROGRESS for
`generation_time`, then COMPLETED), and produces faults on demand: error statuses, 429 with or without
Retry-After, HTML pages, garbage, truncated or oversized bodies, wrong types, connection resets, slow
answers, and FAILED/ABORTED/never-ending reports; and hostile ones: a body that drips in a byte at a
time, headers that drip in after the status line, a malformed Content-Length, report ids out of range,
an error page quoting the credentials it was sent.

For the customer scan it holds an estate of customers (names that need escaping, non-ASCII ones, two
sharing a name, one whose active issues answer 403), devices and active issues on patch and other
services, and serves `GET /api/devices` and `GET /api/org-units/{id}/active-issues` paged with a page cap
smaller than the 1000 asked for, answering 429 to calls beyond its concurrency limit per endpoint. For the
patch status scan it serves `GET /api/devices/{id}/service-monitor-status`: each device's services (the
patch service in every state, some devices without it, some with both, some deleted: 404) with N-central's
time forms, within a limit of 3 calls in flight.

A report's filters and start date narrow its counts as N-central's would, deterministically (`filters`).

The package, bottom up: `data` (the release, report data, submit validation), `filters` (how a report's
filters narrow its data), `services` (each device's monitoring services), `estate` (the customer estate),
`api` (endpoints, answers as data, error bodies), `faults` (each fault's answer), `state` (what it holds,
and the knobs), `front` (the HTTP front), `server` (`Simulator`: state served between start and stop),
`__main__` (`python -m exporter.simulator`).
"""

from exporter.simulator.api import ENDPOINTS, RecordedRequest
from exporter.simulator.data import (
    API_SERVICE_VERSION,
    DEFAULT_DATA,
    DEFAULT_VERSION,
    DEMO_JWT,
    FIRST_REPORT_ID,
    OUTCOMES,
    START_DATE_PATTERN,
)
from exporter.simulator.estate import (
    DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_PAGE_CAP,
    DEMO_CUSTOMER_NAMES,
    DEVICE_CLASSES,
    FORBIDDEN_CUSTOMER,
    LEGACY_PATCH_SERVICE,
    OTHER_SERVICES,
    PATCH_SERVICE,
    SO_NAME,
    Estate,
    EstateCustomer,
    EstateDevice,
    EstateIssue,
    demo_estate,
)
from exporter.simulator.faults import FAULTS, Fault
from exporter.simulator.server import Simulator

__all__ = [
    "API_SERVICE_VERSION", "DEFAULT_CONCURRENCY_LIMIT", "DEFAULT_DATA", "DEFAULT_PAGE_CAP", "DEFAULT_VERSION",
    "DEMO_CUSTOMER_NAMES", "DEMO_JWT", "DEVICE_CLASSES", "ENDPOINTS", "FAULTS", "FIRST_REPORT_ID",
    "FORBIDDEN_CUSTOMER", "LEGACY_PATCH_SERVICE", "OTHER_SERVICES", "OUTCOMES", "PATCH_SERVICE", "SO_NAME",
    "START_DATE_PATTERN", "Estate", "EstateCustomer", "EstateDevice", "EstateIssue", "Fault", "RecordedRequest",
    "Simulator", "demo_estate",
]
